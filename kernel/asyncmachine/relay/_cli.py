"""The ``am-relay`` command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import logging
import os
import secrets
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from asyncmachine import __version__

from ._addresses import parse_address
from ._relay import DEFAULT_PORT, Relay

__all__ = ["main"]

logger = logging.getLogger("asyncmachine.relay")

_DEFAULT_LISTEN = f"127.0.0.1:{DEFAULT_PORT}"
_DEFAULT_TUNNEL_LISTEN = "127.0.0.1:0"
_TOKEN_BYTES = 24


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``am-relay``."""
    parser = argparse.ArgumentParser(
        prog="am-relay",
        description=(
            "Serve a static site (the offline JupyterLite build) and bridge its "
            "WebSockets: allowlisted TCP tunnels let a machine in the page expose "
            "its REPL endpoint on this host. Stop with Ctrl-C or SIGTERM."
        ),
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )

    server = parser.add_argument_group("server and site")
    server.add_argument(
        "--listen",
        metavar="HOST:PORT",
        default=_DEFAULT_LISTEN,
        help=f"address of the HTTP server; port 0 picks a free one "
        f"(default: {_DEFAULT_LISTEN})",
    )
    server.add_argument(
        "--site", metavar="DIR", type=Path, help="directory of static files to serve"
    )
    server.add_argument(
        "--index",
        metavar="URL",
        help="where / redirects, relative to the site, e.g. "
        "'notebooks/index.html?path=bar.ipynb' (default: serve index.html)",
    )

    access = parser.add_argument_group("access")
    token_group = access.add_mutually_exclusive_group()
    token_group.add_argument(
        "--token",
        metavar="T",
        help="token that WebSocket clients must present; other local users can "
        "see it in the process list, so prefer --token-file (default: a new "
        "random token, printed once)",
    )
    token_group.add_argument(
        "--token-file",
        metavar="FILE",
        type=Path,
        help="read the token from FILE; if FILE does not exist, write a new "
        "random token to it (mode 0600)",
    )
    access.add_argument(
        "--allow-origin",
        metavar="ORIGIN",
        action="append",
        default=None,
        help="Origin header value accepted on WebSockets, e.g. "
        "http://192.168.1.5:12733; repeatable (default: the relay's own "
        "http://127.0.0.1:PORT and http://localhost:PORT)",
    )
    access.add_argument(
        "--allow-no-origin",
        action="store_true",
        help="accept WebSocket requests without an Origin header (clients that "
        "are not browsers)",
    )

    tunnels = parser.add_argument_group("tunnels")
    tunnels.add_argument(
        "--dial",
        metavar="HOST:PORT",
        action="append",
        default=[],
        help="TCP address that pages may connect to through /tunnel/dial; "
        "repeatable (default: none)",
    )
    tunnels.add_argument(
        "--tunnel-listen",
        metavar="HOST:PORT",
        action="append",
        default=None,
        help="TCP address that pages may have the relay listen on through "
        "/tunnel/listen, port 0 for any free port; repeatable "
        f"(default: {_DEFAULT_TUNNEL_LISTEN})",
    )
    tunnels.add_argument(
        "--repl-dir",
        metavar="DIR",
        type=Path,
        help="directory for <machine-id>.addr files of listen tunnels",
    )
    tunnels.add_argument(
        "--max-message-size",
        metavar="BYTES",
        type=int,
        default=1 << 20,
        help="largest WebSocket message accepted on tunnels, in bytes "
        "(default: 1048576)",
    )

    parser.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default="info",
        help="level of the log written to stderr (default: info)",
    )
    return parser


def load_token(args: argparse.Namespace) -> str:
    """Return the token from --token or --token-file, or a new random one.

    Raises:
        ValueError: The token or the token file is empty.
        OSError: The token file cannot be read or written.
    """
    if args.token is not None:
        if not args.token:
            raise ValueError("--token must not be empty")
        return args.token
    if args.token_file is not None:
        path: Path = args.token_file
        if path.exists():
            token = path.read_text(encoding="utf-8").strip()
            if not token:
                raise ValueError(f"token file {path} is empty")
            return token
        token = secrets.token_urlsafe(_TOKEN_BYTES)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(token + "\n")
        return token
    return secrets.token_urlsafe(_TOKEN_BYTES)


async def run(args: argparse.Namespace, relay: Relay) -> int:
    """Serve until SIGINT or SIGTERM, then stop the relay; return the exit code."""
    try:
        await relay.start()
    except OSError as exc:
        print(f"am-relay: {exc.strerror or exc}", file=sys.stderr)
        if exc.errno in (errno.EADDRINUSE, errno.EACCES):
            print(
                "am-relay: pass --listen HOST:PORT with a free port, or port 0 "
                "for any free port",
                file=sys.stderr,
            )
        return 1

    stop = asyncio.Event()
    received: list[str] = []

    def request_stop(signal_number: signal.Signals) -> None:
        received.append(signal_number.name)
        stop.set()

    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signal_number, request_stop, signal_number)

    print(f"am-relay {__version__} listening on {relay.url}", flush=True)
    # The token is printed here once for the user, never logged.
    print(f"open {relay.page_url}", flush=True)
    try:
        await stop.wait()
        logger.info("stopping on %s", received[0])
    finally:
        await relay.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``am-relay`` with the given arguments; return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        host, port = parse_address(args.listen)
        token = load_token(args)
        relay = Relay(
            args.site,
            host=host,
            port=port,
            token=token,
            allowed_origins=args.allow_origin,
            allow_no_origin=args.allow_no_origin,
            dial_allowlist=args.dial,
            listen_allowlist=args.tunnel_listen or (_DEFAULT_TUNNEL_LISTEN,),
            repl_dir=args.repl_dir,
            max_message_size=args.max_message_size,
            index_url=args.index,
        )
    except (ValueError, OSError) as exc:
        parser.error(str(exc))
    try:
        return asyncio.run(run(args, relay))
    except KeyboardInterrupt:
        # Without loop signal handlers (Windows), asyncio.run cancels run() on
        # Ctrl-C, which still stops the relay, and then raises this.
        return 0
