"""The offline site's build: its Pyodide lock, its config and its cache stamp."""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from pathlib import Path

import pytest

from asyncmachine.lite import _build as build_lite
from tests.lite.conftest import BUILD_TIMEOUT_SECONDS

# The first test that uses the lite_site fixture may build the site.
pytestmark = pytest.mark.timeout(BUILD_TIMEOUT_SECONDS + 60)

KERNEL_PLUGIN = "@jupyterlite/pyodide-kernel-extension:kernel"


def canonical_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.fixture(scope="module")
def lock(lite_site: Path) -> dict:
    return json.loads((lite_site / "static/pyodide/pyodide-lock.json").read_text())


def test_lock_files_exist_with_hashes(lite_site: Path, lock: dict) -> None:
    for name, entry in lock["packages"].items():
        wheel = lite_site / "static/pyodide" / entry["file_name"]
        assert wheel.is_file(), f"{name}: {wheel} is missing"
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        assert digest == entry["sha256"], f"{name}: sha256 mismatch"


def test_lock_wheels_named_by_content(lite_site: Path, lock: dict) -> None:
    for name, entry in lock["packages"].items():
        project, version, tag, *_rest = entry["file_name"].split("-")
        # The build tag is 0 and the start of the wheel's sha256.
        assert tag == "0" + entry["sha256"][:12], name
        assert canonical_name(project) == name


def test_hashed_wheel_name_keeps_build_tags(tmp_path: Path) -> None:
    plain = tmp_path / "demo_pkg-1.0-py3-none-any.whl"
    plain.write_bytes(b"PK")
    digest = hashlib.sha256(b"PK").hexdigest()[:12]
    tagged = tmp_path / "demo_pkg-1.0-1-py3-none-any.whl"
    tagged.write_bytes(b"PK")

    assert build_lite.hashed_wheel_name(plain) == (
        f"demo_pkg-1.0-0{digest}-py3-none-any.whl"
    )
    assert build_lite.hashed_wheel_name(tagged) == tagged.name


def test_lock_dependencies_are_shipped(lock: dict) -> None:
    # Pyodide normalizes names (PEP 503), and its own lock writes some
    # dependencies unnormalized, for example prompt_toolkit.
    names = {canonical_name(name) for name in lock["packages"]}
    for name, entry in lock["packages"].items():
        missing = {canonical_name(dep) for dep in entry["depends"]} - names
        assert not missing, f"{name} depends on packages not in the lock: {missing}"


def test_lock_asyncmachine_entry(lite_site: Path, lock: dict) -> None:
    entry = lock["packages"]["asyncmachine"]
    # amrepl needs prompt_toolkit, and the browser never uses it.
    assert entry["imports"] == ["asyncmachine"]
    assert set(entry["depends"]) >= {"graphviz", "rpyc"}

    wheel = lite_site / "static/pyodide" / entry["file_name"]
    with zipfile.ZipFile(wheel) as archive:
        assert "asyncmachine/__init__.py" in archive.namelist()


def test_lock_rpyc_drops_plumbum(lock: dict) -> None:
    entry = lock["packages"]["rpyc"]
    assert entry["version"] == "6.0.2"
    assert "plumbum" not in entry["depends"]


def test_lock_ipywidgets_without_front_end(lock: dict) -> None:
    depends = set(lock["packages"]["ipywidgets"]["depends"])
    assert depends == {"comm", "ipython", "traitlets"}


def test_lite_graphviz_wheel_ships_wasm(lite_site: Path, lock: dict) -> None:
    entry = lock["packages"]["lite-graphviz"]
    assert entry["imports"] == ["lite_graphviz"]
    wheel = lite_site / "static/pyodide" / entry["file_name"]
    with zipfile.ZipFile(wheel) as archive:
        module = archive.read("lite_graphviz/graphviz.mjs").decode("utf-8")
    assert "Graphviz" in module
    assert len(module) > 100_000, "graphviz.mjs is too small to hold the wasm"


def test_site_config_is_offline(lite_site: Path) -> None:
    config = json.loads((lite_site / "jupyter-lite.json").read_text())
    data = config["jupyter-config-data"]
    kernel = data["litePluginSettings"][KERNEL_PLUGIN]

    assert kernel["disablePyPIFallback"] is True
    assert kernel["pyodideUrl"] == "./static/pyodide/pyodide.mjs"
    assert (lite_site / "static/pyodide/pyodide.mjs").is_file()
    assert (lite_site / "static/pyodide/pyodide.asm.wasm").is_file()
    for url in kernel["pipliteUrls"]:
        assert url.startswith("./"), f"piplite index outside the site: {url}"


def test_kernel_preloads_from_lock(lite_site: Path, lock: dict) -> None:
    config = json.loads((lite_site / "jupyter-lite.json").read_text())
    kernel = config["jupyter-config-data"]["litePluginSettings"][KERNEL_PLUGIN]
    preloaded = kernel["loadPyodideOptions"]["packages"]

    # The kernel installs these one by one at start unless they are preloaded.
    kernel_packages = {"micropip", "piplite", "ipykernel", "comm", "pyodide-kernel"}
    assert kernel_packages | {"jedi", "ipython"} <= set(preloaded)
    assert {"asyncmachine", "rpyc", "ipywidgets", "lite-graphviz"} <= set(preloaded)
    for name in preloaded:
        assert name in lock["packages"], f"preloaded {name} is not in the lock"


@pytest.mark.parametrize("name", ["piplite", "pyodide-kernel", "ipykernel"])
def test_kernel_wheel_has_bytecode(lite_site: Path, lock: dict, name: str) -> None:
    entry = lock["packages"][name]
    with zipfile.ZipFile(lite_site / "static/pyodide" / entry["file_name"]) as wheel:
        names = wheel.namelist()
    sources = [path for path in names if path.endswith(".py")]
    compiled = [path for path in names if path.endswith(".cpython-314.pyc")]
    assert sources
    assert len(compiled) == len(sources)


def test_preload_outside_lock_fails(tmp_path: Path) -> None:
    config = {
        "jupyter-config-data": {
            "litePluginSettings": {
                KERNEL_PLUGIN: {"loadPyodideOptions": {"packages": ["ipython", "nope"]}}
            }
        }
    }
    path = tmp_path / "jupyter-lite.json"
    path.write_text(json.dumps(config))

    with pytest.raises(build_lite.BuildError, match="preloads nope"):
        build_lite.check_preload(path, {"ipython": {}})
    build_lite.check_preload(path, {"ipython": {}, "nope": {}})


def test_site_has_widget_manager(lite_site: Path) -> None:
    config = json.loads((lite_site / "jupyter-lite.json").read_text())
    extensions = config["jupyter-config-data"]["federated_extensions"]
    names = {extension["name"] for extension in extensions}
    assert "@jupyter-widgets/jupyterlab-manager" in names


def test_site_ships_bar_notebook(lite_site: Path) -> None:
    notebook = json.loads((lite_site / "files/bar.ipynb").read_text())
    sources = ["".join(cell["source"]) for cell in notebook["cells"]]
    assert any("import asyncmachine" in source for source in sources)


def test_build_skipped_when_stamp_matches(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "site"
    out.mkdir()
    stamp = {"inputs_sha256": build_lite.inputs_digest()}
    (out / build_lite.STAMP_NAME).write_text(json.dumps(stamp))

    exit_code = build_lite.main(["--out", str(out), "--cache", str(tmp_path / "c")])

    assert exit_code == 0
    assert "up to date" in capsys.readouterr().err
    assert sorted(path.name for path in out.iterdir()) == [build_lite.STAMP_NAME]


def test_read_stamp_missing_or_invalid(tmp_path: Path) -> None:
    assert build_lite.read_stamp(tmp_path) is None

    (tmp_path / build_lite.STAMP_NAME).write_text("not json")
    assert build_lite.read_stamp(tmp_path) is None


def test_inputs_digest_covers_pins(monkeypatch: pytest.MonkeyPatch) -> None:
    before = build_lite.inputs_digest()
    extra_wheels = (*build_lite.EXTRA_WHEELS, ("six", "1.17.0"))
    monkeypatch.setattr(build_lite, "EXTRA_WHEELS", extra_wheels)
    assert build_lite.inputs_digest() != before


def test_wheel_metadata_skips_extras(tmp_path: Path) -> None:
    wheel = tmp_path / "demo_pkg-1.2-py3-none-any.whl"
    metadata = (
        "Metadata-Version: 2.1\n"
        "Name: demo_pkg\n"
        "Version: 1.2\n"
        "Requires-Dist: Plumbum>=1.2\n"
        'Requires-Dist: pytest; extra == "test"\n'
        "Requires-Dist: typing_extensions>=4; python_version < '3.12'\n"
        "\n"
        "A description that mentions Requires-Dist: nothing.\n"
    )
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("demo_pkg/__init__.py", "")
        archive.writestr("demo_pkg/sub/__init__.py", "")
        archive.writestr("helper.py", "")
        archive.writestr("demo_pkg-1.2.dist-info/METADATA", metadata)

    name, version, requires, imports = build_lite.wheel_metadata(wheel)

    assert (name, version) == ("demo_pkg", "1.2")
    assert requires == ["plumbum", "typing-extensions"]
    assert imports == ["demo_pkg", "helper"]


def test_lock_entry_applies_dependency_changes(tmp_path: Path) -> None:
    wheel = tmp_path / "rpyc-6.0.2-py3-none-any.whl"
    metadata = "Name: rpyc\nVersion: 6.0.2\nRequires-Dist: plumbum\n\n"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("rpyc/__init__.py", "")
        archive.writestr("rpyc-6.0.2.dist-info/METADATA", metadata)

    entry = build_lite.lock_entry(wheel)

    assert entry["name"] == "rpyc"
    assert entry["depends"] == []
    assert entry["imports"] == ["rpyc"]
    assert entry["sha256"] == hashlib.sha256(wheel.read_bytes()).hexdigest()
