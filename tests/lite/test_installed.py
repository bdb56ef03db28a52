"""An installed asyncmachine, not a source checkout, builds the offline site.

The project's wheel is unpacked into a folder on PYTHONPATH, and that copy's
``python -m asyncmachine.lite`` builds the site into the XDG cache folder. The
build reuses the checkout build's download cache, so it needs no network.
pip runs without an index and npm offline, and the HTTP proxies point at
127.0.0.1:9, where no server is expected.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.lite.conftest import BUILD_TIMEOUT_SECONDS, CACHE_DIR, DEAD_URL

# The site build's own environment pins setuptools 84.2.1, which builds
# wheels with no extra package and, without build isolation, no download. The
# setuptools that `python -m venv` puts in the project's .venv (65.5.0 with
# Python 3.11.7) needs the separate wheel package for that.
BUILD_PYTHON = CACHE_DIR / "venv" / "bin" / "python"
PROJECT_SOURCES = ("pyproject.toml", "README.md", "kernel", "repl")
IMPORT_CHECK = (
    "import asyncmachine, asyncmachine.lite; "
    "print(asyncmachine.__file__); print(asyncmachine.lite.__file__)"
)


def run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
        **kwargs,  # type: ignore[arg-type]
    )


def tail(output: str, lines: int = 40) -> str:
    return "\n".join(output.splitlines()[-lines:])


def build_project_wheel(tmp_path: Path) -> Path:
    """Build the project's wheel from a copy of its sources, so that
    setuptools' build/ and egg-info folders stay out of the checkout.
    """
    source = tmp_path / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints")
    for name in PROJECT_SOURCES:
        if (REPO_ROOT / name).is_dir():
            shutil.copytree(REPO_ROOT / name, source / name, ignore=ignore)
        else:
            source.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / name, source / name)

    wheel_dir = tmp_path / "wheel"
    result = run(
        [str(BUILD_PYTHON), "-m", "pip", "wheel", "--quiet", "--no-deps"]
        + ["--no-build-isolation", "--no-index", "--disable-pip-version-check"]
        + ["--wheel-dir", str(wheel_dir), str(source)]
    )
    assert result.returncode == 0, f"pip wheel failed:\n{tail(result.stdout)}"
    wheels = list(wheel_dir.glob("asyncmachine-*.whl"))
    assert len(wheels) == 1, f"expected one wheel in {wheel_dir}, found {wheels}"
    return wheels[0]


def offline_environment(tmp_path: Path, site_packages: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(site_packages),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "PIP_NO_INDEX": "1",
        "npm_config_offline": "true",
    }
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        env[name] = DEAD_URL
    for name in ("NO_PROXY", "no_proxy"):
        env.pop(name, None)
    return env


def lock_wheel(site: Path, name: str) -> tuple[dict, Path]:
    lock = json.loads((site / "static/pyodide/pyodide-lock.json").read_text())
    entry = lock["packages"][name]
    return entry, site / "static/pyodide" / entry["file_name"]


def bytecode_cache_entries() -> set[str]:
    folder = CACHE_DIR / "bytecode"
    return {str(path.relative_to(folder)) for path in folder.glob("*/*")}


@pytest.mark.timeout(BUILD_TIMEOUT_SECONDS + 600)
def test_installed_package_builds_site(lite_site: Path, tmp_path: Path) -> None:
    site_packages = tmp_path / "site-packages"
    with zipfile.ZipFile(build_project_wheel(tmp_path)) as archive:
        archive.extractall(site_packages)
    installed = site_packages / "asyncmachine"
    assert (installed / "lite/site-src/jupyter-lite.json").is_file()
    assert (installed / "lite/site-src/files/bar.ipynb").is_file()
    assert not (site_packages / "lite_graphviz").exists()

    cache_link = tmp_path / "cache" / "asyncmachine" / "lite-cache"
    cache_link.parent.mkdir(parents=True)
    cache_link.symlink_to(CACHE_DIR, target_is_directory=True)
    env = offline_environment(tmp_path, site_packages)

    # The venv's editable finder comes after PYTHONPATH in the import order.
    result = run([sys.executable, "-c", IMPORT_CHECK], cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stdout
    package_file, lite_file = (Path(line) for line in result.stdout.splitlines())
    assert package_file.is_relative_to(installed), package_file
    assert lite_file.is_relative_to(installed), lite_file

    cache_before = bytecode_cache_entries()
    result = run(
        [sys.executable, "-m", "asyncmachine.lite"],
        cwd=tmp_path,
        env=env,
        timeout=BUILD_TIMEOUT_SECONDS,
    )
    assert result.returncode == 0, f"the build failed:\n{tail(result.stdout)}"

    site = (tmp_path / "cache" / "asyncmachine" / "lite").resolve()
    assert f"site written to {site}:" in result.stdout
    assert "downloading" not in result.stdout
    assert (site / "index.html").is_file()
    assert (site / "files/bar.ipynb").is_file()

    entry, wheel = lock_wheel(site, "asyncmachine")
    with zipfile.ZipFile(wheel) as archive:
        shipped = {name for name in archive.namelist() if name.endswith(".py")}
    expected = {
        f"asyncmachine/{path.relative_to(installed).as_posix()}"
        for path in installed.rglob("*.py")
        if not path.is_relative_to(installed / "lite" / "site-src")
    }
    assert shipped == expected

    # The same sources give the same wheel bytes, so the bytecode step reused
    # the checkout build's compiled wheels.
    assert "compiling bytecode" not in result.stdout
    checkout_entry, _wheel = lock_wheel(lite_site, "asyncmachine")
    assert entry["sha256"] == checkout_entry["sha256"]
    # Pruning the shared cache kept every compiled wheel of the checkout's site.
    assert bytecode_cache_entries() >= cache_before
