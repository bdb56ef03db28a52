"""Build the offline JupyterLite site, which :mod:`asyncmachine.lite` describes.

It reads only the imported asyncmachine package: the site's sources in
``asyncmachine/lite/site-src`` and the package's own files, which go into the
asyncmachine wheel that the site ships. So an installed copy of asyncmachine
builds the same site as a source checkout.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import asyncmachine

# The imported package: kernel/asyncmachine of a source checkout, or a copy
# installed in site-packages.
PACKAGE_DIR = Path(asyncmachine.__file__).resolve().parent
# The site's sources: its JupyterLite config, files/ and the lite_graphviz project.
LITE_DIR = PACKAGE_DIR / "lite" / "site-src"
HELPER_DIR = LITE_DIR / "lite_graphviz"

# Versions that fit together: jupyterlite-pyodide-kernel 0.8.6 expects Pyodide
# 314.0.6 (PYODIDE_VERSION in jupyterlite_pyodide_kernel/constants.py), and
# jupyterlab-widgets 3.0.17 is the front end of ipywidgets 8.1.9.
BUILD_REQUIREMENTS = (
    "jupyterlite-core==0.8.6",
    "jupyterlite-pyodide-kernel==0.8.6",
    # The build reads notebooks under files/ through jupyter-server's contents API.
    "jupyter-server==2.21.1",
    # Adds the @jupyter-widgets/jupyterlab-manager extension to the site.
    "jupyterlab-widgets==3.0.17",
    # Builds the lite_graphviz wheel without build isolation.
    "setuptools==84.2.1",
)
PYODIDE_NPM = ("pyodide", "314.0.6")
GRAPHVIZ_WASM_NPM = ("@hpcc-js/wasm-graphviz", "1.29.2")
# Pure-Python wheels from PyPI added to the Pyodide lock, beside the ones the
# lock names at start-up.
EXTRA_WHEELS = (
    ("rpyc", "6.0.2"),
    ("graphviz", "0.21"),
    ("ipywidgets", "8.1.9"),
    # Not in the Pyodide 314.0.6 lock, but the kernel installs it at start.
    ("comm", "0.2.3"),
)
# The lock's packages that the kernel loads at start, with their dependencies.
STARTUP_PACKAGES = ("micropip", "packaging", "ipython", "jedi")
# Wheels also offered to "%pip install" through the piplite index.
PIPLITE_WHEELS = ("comm",)
# Wheels of the kernel add-on (jupyterlite-pyodide-kernel) that the kernel
# installs at start with piplite, one after another. The site adds them to the
# Pyodide lock, so that loadPyodide loads them together with the rest.
KERNEL_WHEELS = ("piplite", "pyodide-kernel", "ipykernel")
# The kernel add-on's folder of those wheels, relative to the build environment.
KERNEL_WHEELS_DIR = (
    "share/jupyter/labextensions/@jupyterlite/pyodide-kernel-extension/static/pypi"
)
KERNEL_SETTINGS = "@jupyterlite/pyodide-kernel-extension:kernel"

# Lock dependencies changed from the wheels' metadata, by package.
DEPENDS_REMOVED = {
    # plumbum does not import in Pyodide (No module named 'grp'), and rpyc's
    # core never imports it.
    "rpyc": {"plumbum"},
    # The kernel ships its own widgetsnbextension stand-in, and the front end
    # of jupyterlab-widgets is part of the site.
    "ipywidgets": {"widgetsnbextension", "jupyterlab-widgets"},
}
DEPENDS_ADDED = {
    # asyncmachine.vis and asyncmachine.rpc then work after a plain
    # "import asyncmachine", because Pyodide loads only what the lock names.
    "asyncmachine": {"graphviz", "rpyc"},
    # piplite imports micropip but does not declare it.
    "piplite": {"micropip"},
}

# Files of the npm pyodide package that the kernel loads.
PYODIDE_CORE_FILES = (
    "pyodide.mjs",
    "pyodide.js",
    "pyodide.asm.mjs",
    "pyodide.asm.wasm",
    "python_stdlib.zip",
    "package.json",
)
STAMP_NAME = ".lite-build-stamp.json"
# Version of the bytecode step below; changing it recompiles the cached wheels.
BYTECODE_FORMAT = "cpython-314-unchecked-hash-1"
# Python and Jupyter write these folders and files beside the sources, so the
# inputs hash and the asyncmachine wheel leave them out.
DIGEST_IGNORED_PARTS = {"__pycache__", ".ipynb_checkpoints", ".jupyterlite.doit.db"}
# Every entry of the asyncmachine wheel gets this date and mode, so the same
# sources give the same bytes. The bytecode step caches by the wheel's sha256,
# so its cache then hits after a rebuild and for another copy of the package.
WHEEL_DATE_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip entry can store
WHEEL_FILE_MODE = 0o644
# setuptools' bdist_wheel dates every entry of the lite_graphviz wheel with
# this (1980-01-01 UTC), for the same reason.
WHEEL_SOURCE_DATE_EPOCH = "315532800"


class BuildError(Exception):
    """A failed build step, with a message that names it and the next step."""


def log(message: str) -> None:
    print(f"build-lite: {message}", file=sys.stderr, flush=True)


def canonical_name(name: str) -> str:
    """Return the normalized project name (PEP 503): lowercase, dashes."""
    return re.sub(r"[-_.]+", "-", name).lower()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def output_tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def run(
    command: list[str],
    *,
    step: str,
    cwd: Path | None = None,
    hint: str = "",
    env: dict[str, str] | None = None,
) -> str:
    """Run a command and return its output, or raise BuildError with its tail."""
    result = subprocess.run(
        command,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        message = (
            f"{step} failed (exit code {result.returncode}): {' '.join(command)}\n"
            f"--- last lines of its output ---\n{output_tail(result.stdout)}"
        )
        raise BuildError(f"{message}\n{hint}" if hint else message)
    return result.stdout


# Default folders


def checkout_root() -> Path | None:
    """Return the checkout root if the package is its kernel/asyncmachine, else None."""
    root = PACKAGE_DIR.parent.parent
    if PACKAGE_DIR.parent.name == "kernel" and (root / "pyproject.toml").is_file():
        return root
    return None


def user_cache_dir() -> Path:
    """Return ``$XDG_CACHE_HOME/asyncmachine``, by default ``~/.cache/asyncmachine``."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG Base Directory Specification treats a relative path as invalid.
    if not os.path.isabs(base):
        base = str(Path.home() / ".cache")
    return Path(base) / "asyncmachine"


def default_out_dir() -> Path:
    """Return the site's default folder: build/lite of a checkout, else a user cache."""
    root = checkout_root()
    if root is not None:
        return root / "build" / "lite"
    return user_cache_dir() / "lite"


def default_cache_dir() -> Path:
    """Return the default folder of the build environment and the downloads."""
    root = checkout_root()
    if root is not None:
        return root / "build" / "lite-cache"
    return user_cache_dir() / "lite-cache"


# Inputs and the stamp


def package_files(package_dir: Path) -> Iterator[tuple[str, Path]]:
    """Yield the files of a package folder as (POSIX path relative to it, path).

    The order is that of the relative paths. Bytecode and DIGEST_IGNORED_PARTS
    are left out.
    """
    files = {}
    for path in package_dir.rglob("*"):
        relative = path.relative_to(package_dir)
        ignored = DIGEST_IGNORED_PARTS.intersection(relative.parts)
        if path.is_file() and not ignored and path.suffix != ".pyc":
            files[relative.as_posix()] = path
    for name in sorted(files):
        yield name, files[name]


def inputs_digest() -> str:
    """Hash the build inputs: the pinned versions and the asyncmachine package.

    The package's files include this module and the site's sources. They enter
    the hash by their paths relative to the package, so a source checkout and an
    installed copy of the same sources have the same digest.
    """
    digest = hashlib.sha256()
    pins = [
        BUILD_REQUIREMENTS,
        PYODIDE_NPM,
        GRAPHVIZ_WASM_NPM,
        EXTRA_WHEELS,
        BYTECODE_FORMAT,
    ]
    digest.update(json.dumps(pins).encode())
    for name, path in package_files(PACKAGE_DIR):
        digest.update(name.encode() + b"\0")
        digest.update(file_sha256(path).encode())
    return digest.hexdigest()


def read_stamp(out_dir: Path) -> str | None:
    try:
        return json.loads((out_dir / STAMP_NAME).read_text())["inputs_sha256"]
    except (OSError, ValueError, KeyError):
        return None


@contextlib.contextmanager
def cache_lock(cache_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the cache, so that two builds do not interleave."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    with (cache_dir / ".lock").open("w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        yield


# Build tools


def ensure_build_venv(cache_dir: Path) -> Path:
    """Create or update the build's virtual environment and return its python."""
    venv = cache_dir / "venv"
    python = venv / "bin" / "python"
    marker = venv / ".requirements"
    wanted = "\n".join(BUILD_REQUIREMENTS)

    if python.exists() and marker.exists() and marker.read_text() == wanted:
        log(f"build environment up to date ({venv})")
        return python

    if venv.exists():
        shutil.rmtree(venv)
    log(f"creating the build environment {venv} ({', '.join(BUILD_REQUIREMENTS)})")
    run(
        [sys.executable, "-m", "venv", str(venv)], step="creating a virtual environment"
    )
    run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        + list(BUILD_REQUIREMENTS),
        step="pip install of the build tools",
        hint="Check that PyPI is reachable, then run the build again.",
    )
    marker.write_text(wanted)
    return python


def npm_package(name: str, version: str, cache_dir: Path) -> Path:
    """Download and unpack an npm package once (`npm pack`) and return its folder."""
    folder = npm_package_folder(name, version, cache_dir)
    if (folder / "package.json").exists():
        log(f"npm package {name}@{version} already downloaded")
        return folder

    npm = shutil.which("npm")
    if npm is None:
        raise BuildError(
            "npm not found on PATH: install Node.js 18 or newer with npm "
            "(Debian: apt-get install -y nodejs npm), then run the build again"
        )
    log(f"downloading npm package {name}@{version}")
    with tempfile.TemporaryDirectory(dir=cache_dir) as temp:
        output = run(
            [npm, "pack", f"{name}@{version}", "--pack-destination", temp, "--silent"],
            step=f"npm pack {name}@{version}",
            hint="Check that the npm registry is reachable, then run the build again.",
        )
        tarball = Path(temp) / output.strip().splitlines()[-1]
        unpacked = Path(temp) / "unpacked"
        with tarfile.open(tarball) as archive:
            archive.extractall(unpacked, filter="data")
        if folder.exists():
            shutil.rmtree(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        # npm tarballs keep their files under package/.
        (unpacked / "package").rename(folder)
    return folder


def npm_package_folder(name: str, version: str, cache_dir: Path) -> Path:
    return cache_dir / "npm" / f"{canonical_name(name).lstrip('@')}-{version}"


def check_node_tools(cache_dir: Path) -> None:
    """Fail before the slow steps when node, or npm for a download, is missing.

    The bytecode step runs Pyodide under node, and npm downloads the npm
    packages that the cache does not contain yet.
    """
    missing = []
    if shutil.which("node") is None:
        missing.append("node")
    downloads = [
        npm_package_folder(name, version, cache_dir) / "package.json"
        for name, version in (PYODIDE_NPM, GRAPHVIZ_WASM_NPM)
    ]
    if shutil.which("npm") is None and not all(path.exists() for path in downloads):
        missing.append("npm")
    if missing:
        raise BuildError(
            f"{' and '.join(missing)} not found on PATH: install Node.js 18 or "
            "newer with npm (Debian: apt-get install -y nodejs npm), then run "
            "the build again"
        )


def find_wheel(folder: Path, name: str, version: str) -> Path | None:
    for path in folder.glob("*.whl"):
        wheel_name, wheel_version = path.name.split("-")[:2]
        if canonical_name(wheel_name) == canonical_name(name) and (
            wheel_version == version
        ):
            return path
    return None


def pypi_wheels(
    python: Path, requirements: list[tuple[str, str]], cache_dir: Path
) -> dict[str, Path]:
    """Download pure-Python wheels for Python 3.14 and return them by name."""
    folder = cache_dir / "wheels"
    folder.mkdir(parents=True, exist_ok=True)
    wheels = {}
    missing = [(n, v) for n, v in requirements if find_wheel(folder, n, v) is None]
    if missing:
        log(f"downloading {len(missing)} of {len(requirements)} wheels from PyPI")
    for number, (name, version) in enumerate(missing, start=1):
        log(f"  [{number}/{len(missing)}] {name}=={version}")
        run(
            [str(python), "-m", "pip", "download", "--quiet", "--no-deps"]
            + ["--only-binary=:all:", "--python-version", "3.14"]
            + ["--dest", str(folder), f"{name}=={version}"],
            step=f"pip download of {name}=={version}",
            hint="Check that PyPI is reachable, then run the build again.",
        )
    for name, version in requirements:
        wheel = find_wheel(folder, name, version)
        if wheel is None:
            raise BuildError(
                f"pip download of {name}=={version} left no wheel in {folder}; "
                f"check that PyPI has a py3-none-any wheel of that version"
            )
        wheels[canonical_name(name)] = wheel
    return wheels


def copy_sources(sources: list[Path], source_root: Path, target_root: Path) -> None:
    """Copy paths under `source_root` to the same relative paths in `target_root`."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for source in sources:
        target = target_root / source.relative_to(source_root)
        if source.is_dir():
            shutil.copytree(source, target, ignore=ignore)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def build_wheel(python: Path, project: Path, out: Path, label: str) -> Path:
    """Build the wheel of a project folder into `out` and return its path."""
    before = set(out.glob("*.whl"))
    run(
        [str(python), "-m", "pip", "wheel", "--quiet", "--no-deps"]
        + ["--no-build-isolation", "--wheel-dir", str(out), str(project)],
        step=f"building the {label} wheel",
        env={**os.environ, "SOURCE_DATE_EPOCH": WHEEL_SOURCE_DATE_EPOCH},
    )
    built = set(out.glob("*.whl")) - before
    if len(built) != 1:
        raise BuildError(
            f"expected one new {label} wheel in {out}, found {sorted(built)}"
        )
    return built.pop()


def record_line(name: str, data: bytes) -> str:
    """Return a wheel RECORD line: the path, its urlsafe-base64 sha256, its size."""
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return f"{name},sha256={digest.decode()},{len(data)}"


def package_wheel_files() -> list[tuple[str, bytes]]:
    """Read the asyncmachine files that the site's wheel ships, by archive path.

    The site's sources (LITE_DIR) are left out, because the browser does not
    need them.
    """
    site_prefix = LITE_DIR.relative_to(PACKAGE_DIR).as_posix() + "/"
    return [
        (f"asyncmachine/{name}", path.read_bytes())
        for name, path in package_files(PACKAGE_DIR)
        if not name.startswith(site_prefix)
    ]


def write_package_wheel(out: Path) -> Path:
    """Write the asyncmachine wheel from the imported package into `out`.

    The wheel has no Requires-Dist, because DEPENDS_ADDED gives its lock entry
    the dependencies. amrepl is not in it: the browser never uses that package.
    """
    version = asyncmachine.__version__
    dist_info = f"asyncmachine-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: asyncmachine\nVersion: {version}\n"
    wheel = (
        "Wheel-Version: 1.0\n"
        f"Generator: {__name__}\n"
        "Root-Is-Purelib: true\n"
        "Tag: py3-none-any\n"
    )
    entries = package_wheel_files()
    entries.append((f"{dist_info}/METADATA", metadata.encode()))
    entries.append((f"{dist_info}/WHEEL", wheel.encode()))
    record = [record_line(name, data) for name, data in entries]
    record.append(f"{dist_info}/RECORD,,")
    entries.append((f"{dist_info}/RECORD", ("\n".join(record) + "\n").encode()))

    out.mkdir(parents=True, exist_ok=True)
    path = out / f"asyncmachine-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=WHEEL_DATE_TIME)
            info.external_attr = (stat.S_IFREG | WHEEL_FILE_MODE) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return path


def build_own_wheels(python: Path, graphviz_npm: Path, out: Path) -> dict[str, Path]:
    """Write the asyncmachine wheel and build the lite_graphviz wheel into `out`.

    The lite_graphviz wheel is built from a copy of its sources, which keeps
    setuptools' build/ and egg-info folders out of the package.
    """
    out.mkdir(parents=True, exist_ok=True)
    log("writing the asyncmachine wheel")
    package_wheel = write_package_wheel(out)

    with tempfile.TemporaryDirectory() as temp:
        log("building the lite_graphviz wheel")
        helper = Path(temp) / "lite_graphviz"
        copy_sources([HELPER_DIR], LITE_DIR, Path(temp))
        package = helper / "lite_graphviz"
        shutil.copy2(graphviz_npm / "dist" / "index.js", package / "graphviz.mjs")
        shutil.copy2(graphviz_npm / "LICENSE", package / "LICENSE.graphviz-wasm")
        # The wheel stores each file's mode, and an installed copy of the
        # sources may have other modes than a checkout.
        for path in helper.rglob("*"):
            if path.is_file():
                path.chmod(WHEEL_FILE_MODE)
        lite_graphviz = build_wheel(python, helper, out, "lite_graphviz")

    return {"asyncmachine": package_wheel, "lite-graphviz": lite_graphviz}


def kernel_wheels(python: Path) -> dict[str, Path]:
    """Return the kernel add-on's KERNEL_WHEELS from the build environment."""
    folder = python.parent.parent / KERNEL_WHEELS_DIR
    found: dict[str, Path] = {}
    for path in sorted(folder.glob("*.whl")):
        name = canonical_name(path.name.split("-")[0])
        if name in KERNEL_WHEELS:
            found[name] = path
    missing = sorted(set(KERNEL_WHEELS) - set(found))
    if missing:
        raise BuildError(
            f"the kernel add-on's wheels {', '.join(missing)} are missing from "
            f"{folder}; delete {python.parent.parent} to reinstall the build tools"
        )
    return found


# Bytecode
#
# The kernel imports IPython, jedi, prompt_toolkit and the site's own packages
# at every start, and Python compiles each module from source unless a .pyc is
# beside it. PyPI wheels ship no bytecode, so this step adds
# __pycache__/*.cpython-314.pyc files to every wheel of the lock, compiled by
# the site's own Pyodide (Python 3.14) running under Node.js. They are
# "unchecked hash" .pyc files: the import system uses them without comparing
# them with the source, whose timestamps change when Pyodide unpacks a wheel.
# On the 2-core build machine this cut the import of IPython and its
# dependencies under Node.js from about 4 s to 1.5 s.

_BYTECODE_NODE_SCRIPT = """
import { pathToFileURL } from "node:url";
const [pyodideModule, workDir] = process.argv.slice(2);
const { loadPyodide } = await import(pathToFileURL(pyodideModule).href);
const pyodide = await loadPyodide();
pyodide.FS.mkdir("/work");
pyodide.FS.mount(pyodide.FS.filesystems.NODEFS, { root: workDir }, "/work");
const code = pyodide.FS.readFile("/work/compile_wheels.py", { encoding: "utf8" });
await pyodide.runPythonAsync(code);
"""

# Runs inside Pyodide: /work/in/*.whl -> /work/out/*.whl with bytecode added.
_BYTECODE_PYTHON_SCRIPT = """
import base64, hashlib, importlib.util, os, py_compile, shutil, sys, zipfile

def record_line(path, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return f"{path},sha256={digest.decode()},{len(data)}"

for name in sorted(os.listdir("/work/in")):
    source = zipfile.ZipFile(f"/work/in/{name}")
    entries = [(info, source.read(info)) for info in source.infolist()]
    scratch = "/tmp/wheel"
    shutil.rmtree(scratch, ignore_errors=True)
    compiled = []
    for info, data in entries:
        path = info.filename
        # Files under NAME.data/ (scripts, headers) are not imported.
        if not path.endswith(".py") or path.split("/", 1)[0].endswith(".data"):
            continue
        target = f"{scratch}/{path}"
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as file:
            file.write(data)
        cache = importlib.util.cache_from_source(path)
        try:
            py_compile.compile(
                target,
                cfile=f"{scratch}/{cache}",
                dfile=path,
                doraise=True,
                invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
            )
        except py_compile.PyCompileError as err:
            print(f"{name}: {path} left without bytecode: {err.msg}", file=sys.stderr)
            continue
        with open(f"{scratch}/{cache}", "rb") as file:
            compiled.append((cache, file.read()))
    record = next(info.filename for info, _ in entries
                  if info.filename.endswith(".dist-info/RECORD"))
    with zipfile.ZipFile(f"/work/out/{name}", "w", zipfile.ZIP_DEFLATED) as out:
        for info, data in entries:
            if info.filename != record:
                out.writestr(info, data)
        for path, data in compiled:
            out.writestr(path, data)
        lines = [line for info, data in entries if info.filename == record
                 for line in data.decode().splitlines() if line]
        lines[-1:-1] = [record_line(path, data) for path, data in compiled]
        out.writestr(record, "\\n".join(lines) + "\\n")
    print(f"{name}: {len(compiled)} modules compiled")
"""


def add_bytecode(
    wheels: dict[str, Path], pyodide_npm: Path, cache_dir: Path
) -> dict[str, Path]:
    """Return the wheels with Python 3.14 bytecode added, cached by input hash."""
    cache = cache_dir / "bytecode" / BYTECODE_FORMAT
    result: dict[str, Path] = {}
    missing: dict[str, tuple[Path, Path]] = {}
    for name, wheel in wheels.items():
        target = cache / file_sha256(wheel)[:24] / wheel.name
        result[name] = target
        if not target.exists():
            missing[name] = (wheel, target)
    if not missing:
        log(f"bytecode of {len(wheels)} wheels already compiled")
        return result

    node = shutil.which("node")
    if node is None:
        raise BuildError(
            "node not found on PATH: install Node.js 18 or newer with npm "
            "(Debian: apt-get install -y nodejs npm), then run the build again"
        )
    log(f"compiling bytecode of {len(missing)} wheels with Pyodide under Node.js")
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bytecode-", dir=cache) as temp:
        work = Path(temp)
        (work / "in").mkdir()
        (work / "out").mkdir()
        for wheel, _target in missing.values():
            shutil.copy2(wheel, work / "in" / wheel.name)
        (work / "compile_wheels.py").write_text(_BYTECODE_PYTHON_SCRIPT)
        script = work / "compile_wheels.mjs"
        script.write_text(_BYTECODE_NODE_SCRIPT)
        run(
            [node, str(script), str(pyodide_npm / "pyodide.mjs"), str(work)],
            step="compiling bytecode in Pyodide",
        )
        for wheel, target in missing.values():
            compiled = work / "out" / wheel.name
            if not compiled.is_file():
                raise BuildError(f"compiling bytecode left no {compiled.name}")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(compiled), str(target))
    return result


def prune_bytecode_cache(cache_dir: Path, used: set[Path]) -> None:
    """Remove cached compiled wheels that this build did not use.

    Each change of the sources makes a new asyncmachine wheel, so without this
    the cache would keep one compiled copy per build.
    """
    cache = cache_dir / "bytecode"
    keep = {path.parent for path in used}
    for folder in cache.glob("*/*"):
        if (
            folder.is_dir()
            and folder not in keep
            and not folder.name.startswith("bytecode-")
        ):
            shutil.rmtree(folder)


# The Pyodide lock


def wheel_metadata(wheel: Path) -> tuple[str, str, list[str], list[str]]:
    """Read a wheel's name, version, required projects and top-level imports."""
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = archive.read(metadata_name).decode("utf-8")

    headers = metadata.split("\n\n", 1)[0]
    fields: dict[str, list[str]] = {}
    for line in headers.splitlines():
        key, _, value = line.partition(": ")
        fields.setdefault(key, []).append(value.strip())

    requires = []
    for requirement in fields.get("Requires-Dist", []):
        # Requirements that only an extra pulls in are not installed.
        # NOTE: other environment markers are not evaluated, so such a
        # requirement counts; write_lock() then fails if the site lacks it.
        if re.search(r"\bextra\s*==", requirement):
            continue
        match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
        if match:
            requires.append(canonical_name(match.group(0)))

    imports = set()
    for name in names:
        top = name.split("/", 1)[0]
        if top.endswith((".dist-info", ".data")):
            continue
        if "/" in name and name.endswith("/__init__.py") and name.count("/") == 1:
            imports.add(top)
        elif "/" not in name and name.endswith(".py"):
            imports.add(name[: -len(".py")])

    return fields["Name"][0], fields["Version"][0], requires, sorted(imports)


def hashed_wheel_name(wheel: Path) -> str:
    """Return the wheel's file name with its content hash as the build tag.

    For example asyncmachine-0.1.0-0a1b2c3d4e5f6-py3-none-any.whl: a build tag
    starts with a digit, hence the 0. A name that changes with the content
    lets browsers cache each wheel for good (see the relay's Cache-Control), and
    Pyodide installs the wheel under its project name and version all the same.
    A wheel that has a build tag already keeps its name.
    """
    parts = wheel.name.removesuffix(".whl").split("-")
    if len(parts) != 5:
        return wheel.name
    project, version, python, abi, platform = parts
    tag = "0" + file_sha256(wheel)[:12]
    return f"{project}-{version}-{tag}-{python}-{abi}-{platform}.whl"


def lock_entry(wheel: Path, file_name: str | None = None) -> dict[str, object]:
    """Make a Pyodide lock entry for a pure-Python wheel served as `file_name`."""
    name, version, requires, imports = wheel_metadata(wheel)
    key = canonical_name(name)
    depends = set(requires) - DEPENDS_REMOVED.get(key, set())
    depends |= DEPENDS_ADDED.get(key, set())
    return {
        "name": key,
        "version": version,
        "file_name": file_name or wheel.name,
        "install_dir": "site",
        "package_type": "package",
        "imports": imports,
        "depends": sorted(depends),
        "sha256": file_sha256(wheel),
        "unvendored_tests": False,
    }


def startup_packages(lock: dict) -> dict[str, dict]:
    """Return the lock entries of STARTUP_PACKAGES and their dependencies."""
    packages = lock["packages"]
    by_name = {canonical_name(key): key for key in packages}
    selected: dict[str, dict] = {}
    pending = list(STARTUP_PACKAGES)
    while pending:
        name = canonical_name(pending.pop())
        if name in selected:
            continue
        if name not in by_name:
            raise BuildError(f"package {name} is not in the Pyodide lock file")
        entry = packages[by_name[name]]
        selected[name] = entry
        pending.extend(entry["depends"])
    return selected


def write_lock(lock: dict, shipped: dict[str, dict], path: Path) -> None:
    """Write the lock with only the shipped packages, checking every dependency."""
    for name, entry in shipped.items():
        for dependency in entry["depends"]:
            if canonical_name(dependency) not in shipped:
                raise BuildError(
                    f"lock entry {name} depends on {dependency}, which the site "
                    f"does not ship; add it to EXTRA_WHEELS or DEPENDS_REMOVED"
                )
    rewritten = {"info": lock["info"], "packages": dict(sorted(shipped.items()))}
    path.write_text(json.dumps(rewritten, indent=1) + "\n")


# The site


def stage_lite_dir(
    stage: Path,
    pyodide_npm: Path,
    lock: dict,
    startup: dict[str, dict],
    startup_wheels: dict[str, Path],
    added_wheels: dict[str, Path],
) -> None:
    """Lay out the folder that `jupyter lite build` reads."""
    for name in ("jupyter_lite_config.json", "jupyter-lite.json"):
        shutil.copy2(LITE_DIR / name, stage / name)
    shutil.copytree(
        LITE_DIR / "files",
        stage / "files",
        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"),
    )

    # With static/pyodide present, the kernel add-on copies it into the site.
    pyodide_dir = stage / "static" / "pyodide"
    pyodide_dir.mkdir(parents=True)
    for name in PYODIDE_CORE_FILES:
        # npm dates every file 1985-10-26, and a browser keeps a file without
        # Cache-Control fresh for a tenth of its age, so the copies get the
        # build's date, which a new Pyodide version then soon replaces.
        shutil.copyfile(pyodide_npm / name, pyodide_dir / name)

    shipped: dict[str, dict] = {}
    for name, entry in startup.items():
        wheel = startup_wheels[name]
        file_name = hashed_wheel_name(wheel)
        shutil.copy2(wheel, pyodide_dir / file_name)
        # Pyodide repackages pure-Python wheels, so the PyPI wheel of the same
        # version has another hash, and Pyodide checks it.
        shipped[name] = {**entry, "file_name": file_name, "sha256": file_sha256(wheel)}
    for name, wheel in added_wheels.items():
        file_name = hashed_wheel_name(wheel)
        shutil.copy2(wheel, pyodide_dir / file_name)
        shipped[name] = lock_entry(wheel, file_name)
    write_lock(lock, shipped, pyodide_dir / "pyodide-lock.json")
    check_preload(stage / "jupyter-lite.json", shipped)

    piplite_dir = stage / "pypi"
    piplite_dir.mkdir()
    for name in PIPLITE_WHEELS:
        shutil.copy2(added_wheels[name], piplite_dir / added_wheels[name].name)


def check_preload(config_path: Path, shipped: dict[str, dict]) -> None:
    """Check that the kernel's preloaded packages are all in the site's lock.

    jupyter-lite.json passes loadPyodideOptions.packages to loadPyodide, which
    loads them in one batch while Pyodide starts, and the kernel then skips its
    own one-by-one installs of micropip, piplite, ipykernel, comm,
    pyodide-kernel, jedi and ipython.
    """
    config = json.loads(config_path.read_text())
    settings = config["jupyter-config-data"]["litePluginSettings"][KERNEL_SETTINGS]
    packages = settings.get("loadPyodideOptions", {}).get("packages", [])
    unknown = sorted(name for name in packages if name not in shipped)
    if unknown:
        raise BuildError(
            f"{config_path.name} preloads {', '.join(unknown)}, which the "
            f"site's Pyodide lock does not contain; use names from "
            f"{', '.join(sorted(shipped))}"
        )


def site_size(folder: Path) -> tuple[int, int]:
    files = [path for path in folder.rglob("*") if path.is_file()]
    return len(files), sum(path.stat().st_size for path in files)


def build_site(out_dir: Path, cache_dir: Path, digest: str) -> None:
    steps = 7
    started = time.monotonic()

    check_node_tools(cache_dir)
    log(f"[1/{steps}] build tools")
    python = ensure_build_venv(cache_dir)

    log(f"[2/{steps}] npm packages")
    pyodide_npm = npm_package(*PYODIDE_NPM, cache_dir)
    graphviz_npm = npm_package(*GRAPHVIZ_WASM_NPM, cache_dir)

    log(f"[3/{steps}] wheels from PyPI")
    lock = json.loads((pyodide_npm / "pyodide-lock.json").read_text())
    startup = startup_packages(lock)
    startup_pins = [(name, entry["version"]) for name, entry in sorted(startup.items())]
    wheels = pypi_wheels(python, startup_pins + list(EXTRA_WHEELS), cache_dir)
    startup_wheels = {name: wheels[name] for name in startup}
    added_wheels = {
        canonical_name(n): wheels[canonical_name(n)] for n, _ in EXTRA_WHEELS
    }

    with tempfile.TemporaryDirectory(prefix="lite-build-", dir=cache_dir) as temp:
        log(f"[4/{steps}] own wheels")
        added_wheels |= build_own_wheels(python, graphviz_npm, Path(temp) / "wheels")
        added_wheels |= kernel_wheels(python)

        log(f"[5/{steps}] bytecode for Python 3.14")
        startup_wheels = add_bytecode(startup_wheels, pyodide_npm, cache_dir)
        added_wheels = add_bytecode(added_wheels, pyodide_npm, cache_dir)
        prune_bytecode_cache(
            cache_dir, {*startup_wheels.values(), *added_wheels.values()}
        )

        log(f"[6/{steps}] staging the site's sources (Pyodide, lock, notebooks)")
        stage = Path(temp) / "lite"
        stage.mkdir()
        stage_lite_dir(stage, pyodide_npm, lock, startup, startup_wheels, added_wheels)

        log(f"[7/{steps}] jupyter lite build")
        built = Path(temp) / "site"
        jupyter = python.parent / "jupyter"
        run(
            [str(jupyter), "lite", "build", "--lite-dir", str(stage)]
            + ["--output-dir", str(built)],
            step="jupyter lite build",
            cwd=stage,
        )
        (built / STAMP_NAME).write_text(json.dumps({"inputs_sha256": digest}) + "\n")

        # Replace the old site only once the new one is complete.
        if out_dir.exists():
            shutil.rmtree(out_dir)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(built), str(out_dir))

    count, size = site_size(out_dir)
    seconds = time.monotonic() - started
    log(f"site written to {out_dir}: {count} files, {size / 1e6:.1f} MB")
    log(f"build finished in {seconds:.0f} s")


def ensure_site(
    out: Path | None = None, cache: Path | None = None, *, force: bool = False
) -> Path:
    """Build the site into `out` unless its stamp matches the inputs.

    Returns the site's folder. `out` and `cache` default to default_out_dir()
    and default_cache_dir(). The progress goes to stderr.

    Raises:
        BuildError: a step failed; the message names it and the fix.
    """
    out_dir = (out if out is not None else default_out_dir()).resolve()
    cache_dir = (cache if cache is not None else default_cache_dir()).resolve()
    try:
        with cache_lock(cache_dir):
            digest = inputs_digest()
            if not force and read_stamp(out_dir) == digest:
                log(f"site in {out_dir} is up to date")
                return out_dir
            build_site(out_dir, cache_dir, digest)
    except OSError as err:
        raise BuildError(
            f"building the site in {out_dir} (cache {cache_dir}) failed: {err}"
        ) from err
    return out_dir


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m asyncmachine.lite",
        description="Build the offline JupyterLite site (Pyodide kernel with "
        "asyncmachine, rpyc, ipywidgets and a WebAssembly Graphviz).",
    )
    parser.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        default=default_out_dir(),
        help="output folder of the site (default: %(default)s)",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        metavar="DIR",
        default=default_cache_dir(),
        help="folder for the build environment and downloads (default: %(default)s)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="rebuild even when the inputs have not changed since the last build "
        "(downloads of pinned versions in the cache are reused)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run ``python -m asyncmachine.lite`` and return its exit status."""
    args = parse_args(argv)
    try:
        ensure_site(args.out, args.cache, force=args.force)
    except BuildError as err:
        log(f"error: {err}")
        return 1
    return 0
