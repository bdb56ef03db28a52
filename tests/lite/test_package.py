"""The build's use of the imported package: the asyncmachine wheel that it
writes for the site, the inputs hash, the default folders and am-demo's errors.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import zipfile
from pathlib import Path

import pytest

import asyncmachine
from asyncmachine import lite
from asyncmachine.demo import _site
from asyncmachine.lite import _build as build_lite
from tests.conftest import REPO_ROOT

VERSION = asyncmachine.__version__
DIST_INFO = f"asyncmachine-{VERSION}.dist-info"


def read_wheel(wheel: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(wheel) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def headers(text: bytes) -> dict[str, list[str]]:
    fields: dict[str, list[str]] = {}
    for line in text.decode().split("\n\n", 1)[0].splitlines():
        key, _, value = line.partition(": ")
        fields.setdefault(key, []).append(value)
    return fields


@pytest.fixture
def package_copy(tmp_path: Path) -> Path:
    """Copy the package with other modes and times, and add bytecode and a
    notebook checkpoint, as an installed and used copy could have them.
    """
    copy = tmp_path / "site-packages" / "asyncmachine"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints")
    shutil.copytree(build_lite.PACKAGE_DIR, copy, ignore=ignore)
    for path in copy.rglob("*"):
        if path.is_file():
            path.chmod(0o600)
            os.utime(path, (2_000_000_000, 2_000_000_000))

    (copy / "__pycache__").mkdir()
    (copy / "__pycache__" / "_machine.cpython-311.pyc").write_bytes(b"bytecode")
    (copy / "lite" / "site-src" / "__pycache__").mkdir()
    (copy / "lite" / "site-src" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"")
    checkpoints = copy / "lite" / "site-src" / "files" / ".ipynb_checkpoints"
    checkpoints.mkdir()
    (checkpoints / "bar-checkpoint.ipynb").write_text("{}")
    return copy


def use_package(monkeypatch: pytest.MonkeyPatch, package_dir: Path) -> None:
    """Make the build read `package_dir` in place of the imported package."""
    monkeypatch.setattr(build_lite, "PACKAGE_DIR", package_dir)
    monkeypatch.setattr(build_lite, "LITE_DIR", package_dir / "lite" / "site-src")
    monkeypatch.setattr(
        build_lite, "HELPER_DIR", package_dir / "lite" / "site-src" / "lite_graphviz"
    )


def test_package_wheel_record_matches(tmp_path: Path) -> None:
    wheel = build_lite.write_package_wheel(tmp_path)
    files = read_wheel(wheel)

    assert wheel.name == f"asyncmachine-{VERSION}-py3-none-any.whl"
    lines = files[f"{DIST_INFO}/RECORD"].decode().splitlines()
    assert lines[-1] == f"{DIST_INFO}/RECORD,,"
    recorded = {}
    for line in lines[:-1]:
        name, digest, size = line.rsplit(",", 2)
        recorded[name] = (digest, int(size))
    assert set(recorded) == set(files) - {f"{DIST_INFO}/RECORD"}
    for name, (digest, size) in recorded.items():
        data = files[name]
        expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest())
        assert digest == f"sha256={expected.rstrip(b'=').decode()}", name
        assert size == len(data), name


def test_package_wheel_metadata(tmp_path: Path) -> None:
    wheel = build_lite.write_package_wheel(tmp_path)
    files = read_wheel(wheel)

    metadata = headers(files[f"{DIST_INFO}/METADATA"])
    assert metadata["Metadata-Version"] == ["2.1"]
    assert metadata["Name"] == ["asyncmachine"]
    assert metadata["Version"] == [VERSION]
    assert "Requires-Dist" not in metadata

    wheel_fields = headers(files[f"{DIST_INFO}/WHEEL"])
    assert wheel_fields["Wheel-Version"] == ["1.0"]
    assert wheel_fields["Generator"] == ["asyncmachine.lite._build"]
    assert wheel_fields["Root-Is-Purelib"] == ["true"]
    assert wheel_fields["Tag"] == ["py3-none-any"]

    name, version, requires, imports = build_lite.wheel_metadata(wheel)
    assert (name, version) == ("asyncmachine", VERSION)
    assert requires == []
    assert imports == ["asyncmachine"]


def test_package_wheel_contents(
    tmp_path: Path, package_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_package(monkeypatch, package_copy)
    names = set(read_wheel(build_lite.write_package_wheel(tmp_path)))

    assert "asyncmachine/__init__.py" in names
    assert "asyncmachine/py.typed" in names
    assert "asyncmachine/lite/_build.py" in names
    assert not [name for name in names if "__pycache__" in name]
    assert not [name for name in names if name.endswith(".pyc")]
    assert not [
        name for name in names if name.startswith("asyncmachine/lite/site-src/")
    ]
    assert not [name for name in names if name.startswith("amrepl/")]

    expected = {
        f"asyncmachine/{path.relative_to(package_copy).as_posix()}"
        for path in package_copy.rglob("*")
        if path.is_file()
        and "__pycache__" not in path.parts
        and ".ipynb_checkpoints" not in path.parts
        and not path.is_relative_to(package_copy / "lite" / "site-src")
    }
    assert {name for name in names if not name.startswith(DIST_INFO)} == expected


def test_package_wheel_bytes_deterministic(
    tmp_path: Path, package_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = build_lite.write_package_wheel(tmp_path / "first")
    second = build_lite.write_package_wheel(tmp_path / "second")
    use_package(monkeypatch, package_copy)
    from_copy = build_lite.write_package_wheel(tmp_path / "copy")

    assert first.read_bytes() == second.read_bytes()
    assert from_copy.read_bytes() == first.read_bytes()


def test_inputs_digest_equal_for_copy(
    package_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = build_lite.inputs_digest()
    use_package(monkeypatch, package_copy)

    assert build_lite.inputs_digest() == original


def test_inputs_digest_covers_site_sources(
    package_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_package(monkeypatch, package_copy)
    before = build_lite.inputs_digest()
    notebook = package_copy / "lite" / "site-src" / "files" / "bar.ipynb"
    notebook.write_text(notebook.read_text().replace("browser-bar", "browser-baz"))

    assert build_lite.inputs_digest() != before


def test_default_dirs_in_checkout() -> None:
    assert build_lite.checkout_root() == REPO_ROOT
    assert lite.default_out_dir() == REPO_ROOT / "build" / "lite"
    assert lite.default_cache_dir() == REPO_ROOT / "build" / "lite-cache"


def test_default_dirs_in_user_cache(
    tmp_path: Path, package_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_package(monkeypatch, package_copy)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))

    assert build_lite.checkout_root() is None
    assert lite.default_out_dir() == tmp_path / "xdg" / "asyncmachine" / "lite"
    assert lite.default_cache_dir() == tmp_path / "xdg" / "asyncmachine" / "lite-cache"


@pytest.mark.parametrize("value", [None, "", "relative/cache"])
def test_default_dirs_xdg_fallback(
    value: str | None,
    tmp_path: Path,
    package_copy: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    use_package(monkeypatch, package_copy)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    if value is None:
        monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    else:
        monkeypatch.setenv("XDG_CACHE_HOME", value)

    expected = tmp_path / "home" / ".cache" / "asyncmachine" / "lite"
    assert lite.default_out_dir() == expected


def test_ensure_site_wraps_os_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")

    with pytest.raises(lite.BuildError, match="failed: .*file"):
        lite.ensure_site(tmp_path / "site", blocker / "cache")


def test_demo_site_error_names_build_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(out: Path) -> Path:
        raise lite.BuildError("npm not found on PATH: install Node.js")

    monkeypatch.setattr(lite, "ensure_site", fail)

    with pytest.raises(_site.SiteError) as caught:
        _site.ensure_site(None)
    assert "npm not found on PATH" in str(caught.value)
    assert "--site DIR" in str(caught.value)


def test_demo_site_dir_used_as_is(tmp_path: Path) -> None:
    with pytest.raises(_site.SiteError, match="no index.html"):
        _site.ensure_site(tmp_path)

    (tmp_path / "index.html").write_text("<html></html>")
    assert _site.ensure_site(tmp_path) == tmp_path


def test_missing_node_fails_before_venv(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    cache = tmp_path / "cache"

    with pytest.raises(build_lite.BuildError) as caught:
        build_lite.build_site(tmp_path / "out", cache, "digest")
    assert "node and npm not found on PATH" in str(caught.value)
    assert not (cache / "venv").exists()

    # With the npm packages cached, only node is missing.
    for name, version in (build_lite.PYODIDE_NPM, build_lite.GRAPHVIZ_WASM_NPM):
        folder = build_lite.npm_package_folder(name, version, cache)
        folder.mkdir(parents=True)
        (folder / "package.json").write_text("{}")
    with pytest.raises(build_lite.BuildError, match="^node not found on PATH"):
        build_lite.build_site(tmp_path / "out", cache, "digest")
