"""Install, remove or find the ``asyncmachine`` Jupyter kernelspec.

Usage::

    python -m asyncmachine.jupyter install [--user | --sys-prefix | --prefix P]
    python -m asyncmachine.jupyter uninstall [--user | --sys-prefix | --prefix P]
    python -m asyncmachine.jupyter list [--prefix P]
"""

from __future__ import annotations

import argparse
import sys

from ._kernelspec import DISPLAY_NAME, KERNEL_NAME, install, list_installed, uninstall


def _add_location(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--user",
        action="store_true",
        help="the current user's Jupyter data directory (the default)",
    )
    where.add_argument(
        "--sys-prefix",
        action="store_true",
        help="the active Python environment (sys.prefix), e.g. a virtualenv",
    )
    where.add_argument(
        "--prefix",
        metavar="P",
        help="P/share/jupyter/kernels",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m asyncmachine.jupyter",
        description=(
            f"Manage the {KERNEL_NAME!r} Jupyter kernelspec ({DISPLAY_NAME}): "
            f"ipykernel running this Python with asyncmachine.jupyter loaded."
        ),
    )
    commands = parser.add_subparsers(dest="command", required=True)
    _add_location(commands.add_parser("install", help="install or replace it"))
    _add_location(commands.add_parser("uninstall", help="remove it"))
    found = commands.add_parser("list", help="print where it is installed")
    found.add_argument("--prefix", metavar="P", help="also search P/share/jupyter")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    options = _parser().parse_args(argv)
    if options.command == "list":
        paths = list_installed(options.prefix)
        if not paths:
            print(f"kernelspec {KERNEL_NAME!r} is not installed", file=sys.stderr)
            return 1
        for path in paths:
            print(path)
        return 0

    location = {
        "sys_prefix": options.sys_prefix,
        "prefix": options.prefix,
        "user": not options.sys_prefix and options.prefix is None,
    }
    if options.command == "install":
        path = install(**location)
        print(f"installed kernelspec {KERNEL_NAME!r} ({DISPLAY_NAME}) in {path}")
        return 0
    try:
        path = uninstall(**location)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"removed kernelspec {KERNEL_NAME!r} from {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
