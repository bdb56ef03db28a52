"""Tests of the asyncmachine kernelspec: install, list, start, uninstall."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

from asyncmachine.jupyter import _kernelspec
from asyncmachine.jupyter.__main__ import main

from .kernels import execute, stream_text


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asyncmachine.jupyter", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_kernel_json_loads_extension() -> None:
    spec = _kernelspec.kernel_json("/opt/python")

    assert spec["argv"][:3] == ["/opt/python", "-m", "ipykernel_launcher"]
    assert "{connection_file}" in spec["argv"]
    assert "--IPKernelApp.extensions=asyncmachine.jupyter" in spec["argv"]
    assert spec["display_name"] == "Python (asyncmachine)"
    assert spec["language"] == "python"


def test_install_list_uninstall_prefix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec_dir = tmp_path / "share" / "jupyter" / "kernels" / "asyncmachine"

    # One run through "python -m", the rest in this process to save startups.
    installed = run_cli("install", "--prefix", str(tmp_path))
    spec = json.loads((spec_dir / "kernel.json").read_text())
    listed = main(["list", "--prefix", str(tmp_path)])
    listed_output = capsys.readouterr()
    removed = main(["uninstall", "--prefix", str(tmp_path)])
    removed_output = capsys.readouterr()
    removed_again = main(["uninstall", "--prefix", str(tmp_path)])
    removed_again_output = capsys.readouterr()

    assert installed.returncode == 0, installed.stderr
    assert str(spec_dir) in installed.stdout
    assert spec["argv"][0] == sys.executable
    assert spec["display_name"] == "Python (asyncmachine)"
    assert listed == 0
    assert str(spec_dir) in listed_output.out.splitlines()
    assert removed == 0
    assert str(spec_dir) in removed_output.out
    assert not spec_dir.exists()
    assert removed_again == 1
    assert "not installed" in removed_again_output.err


def test_install_twice_replaces(tmp_path: Path) -> None:
    first = _kernelspec.install(prefix=str(tmp_path))
    second = _kernelspec.install(prefix=str(tmp_path))

    assert first == second
    assert (second / "kernel.json").is_file()


def test_options_are_exclusive(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["install", "--user", "--prefix", str(tmp_path)])

    assert exit_info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_kernel_starts_with_magic_loaded(tmp_path: Path) -> None:
    directory = _kernelspec.install(prefix=str(tmp_path))
    specs = KernelSpecManager(kernel_dirs=[str(directory.parent)])
    manager = KernelManager(kernel_name="asyncmachine", kernel_spec_manager=specs)
    manager.start_kernel()
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        messages = execute(
            client,
            "import asyncmachine as am\n"
            "m = am.Machine({'Start': am.State()}, id='spec-foo')\n"
            "%am add spec-foo Start\n",
        )
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)

    assert stream_text(messages) == "spec-foo: executed (Start:1)\n"
