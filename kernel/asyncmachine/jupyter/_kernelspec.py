"""The ``asyncmachine`` Jupyter kernelspec: ipykernel with this extension loaded.

The kernel runs the Python that installed the spec (``sys.executable``), so
install it from the environment where asyncmachine is installed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from jupyter_client.kernelspec import KernelSpecManager
from jupyter_core.paths import SYSTEM_JUPYTER_PATH, jupyter_data_dir

__all__ = [
    "DISPLAY_NAME",
    "KERNEL_NAME",
    "install",
    "kernel_json",
    "kernels_dir",
    "list_installed",
    "uninstall",
]

logger = logging.getLogger("asyncmachine.jupyter")

KERNEL_NAME = "asyncmachine"
DISPLAY_NAME = "Python (asyncmachine)"


def kernel_json(python: str | None = None) -> dict[str, Any]:
    """Return the kernelspec: ipykernel started with the extension loaded."""
    return {
        "argv": [
            python or sys.executable,
            "-m",
            "ipykernel_launcher",
            "-f",
            "{connection_file}",
            "--IPKernelApp.extensions=asyncmachine.jupyter",
        ],
        "display_name": DISPLAY_NAME,
        "language": "python",
        "metadata": {"debugger": True},
    }


def kernels_dir(
    *, user: bool = False, sys_prefix: bool = False, prefix: str | None = None
) -> Path:
    """Return the ``kernels`` directory of one install location.

    `prefix` (or ``sys.prefix`` with `sys_prefix`) gives
    ``PREFIX/share/jupyter/kernels``, and `user` gives the user's Jupyter data
    directory. With none of them, the system-wide directory that jupyter_client
    installs to is returned.
    """
    if prefix is not None:
        return Path(prefix).absolute() / "share" / "jupyter" / "kernels"
    if sys_prefix:
        return Path(sys.prefix) / "share" / "jupyter" / "kernels"
    if user:
        return Path(jupyter_data_dir()) / "kernels"
    # The directory jupyter_client's install_kernel_spec picks without options.
    return Path(SYSTEM_JUPYTER_PATH[0]) / "kernels"


def install(
    *,
    user: bool = False,
    sys_prefix: bool = False,
    prefix: str | None = None,
    python: str | None = None,
) -> Path:
    """Install (or replace) the ``asyncmachine`` kernelspec and return its directory.

    Args:
        user: install for the current user.
        sys_prefix: install into ``sys.prefix`` (the active virtual environment).
        prefix: install into ``PREFIX/share/jupyter/kernels``.
        python: the interpreter the kernel runs, by default ``sys.executable``.
    """
    if sys_prefix:
        prefix = sys.prefix
    with tempfile.TemporaryDirectory() as source:
        spec_file = Path(source) / "kernel.json"
        spec_file.write_text(json.dumps(kernel_json(python), indent=1) + "\n")
        destination = KernelSpecManager().install_kernel_spec(
            source, KERNEL_NAME, user=user and prefix is None, prefix=prefix
        )
    logger.info("installed kernelspec %s in %s", KERNEL_NAME, destination)
    return Path(destination)


def uninstall(
    *, user: bool = False, sys_prefix: bool = False, prefix: str | None = None
) -> Path:
    """Remove the ``asyncmachine`` kernelspec from one location and return its path.

    Raises:
        FileNotFoundError: the kernelspec is not installed there.
    """
    directory = (
        kernels_dir(user=user, sys_prefix=sys_prefix, prefix=prefix) / KERNEL_NAME
    )
    if not (directory / "kernel.json").is_file():
        raise FileNotFoundError(
            f"kernelspec {KERNEL_NAME!r} is not installed in {directory.parent}"
        )
    shutil.rmtree(directory)
    logger.info("removed kernelspec %s from %s", KERNEL_NAME, directory)
    return directory


def list_installed(prefix: str | None = None) -> list[Path]:
    """Return the directories holding an ``asyncmachine`` kernelspec.

    Searched: every directory Jupyter searches for kernels (``jupyter
    kernelspec list``), plus ``PREFIX/share/jupyter/kernels`` when given.
    """
    dirs = [Path(d) for d in KernelSpecManager().kernel_dirs]
    if prefix is not None:
        dirs.insert(0, kernels_dir(prefix=prefix))
    found = []
    for directory in dict.fromkeys(dirs):
        spec = directory / KERNEL_NAME
        if (spec / "kernel.json").is_file():
            found.append(spec)
    return found


def read_spec(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """Return the parsed ``kernel.json`` in `directory`."""
    return json.loads((Path(directory) / "kernel.json").read_text())
