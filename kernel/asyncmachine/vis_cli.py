"""The am-vis command: diagrams and summaries of am-dbg dump files.

Usage::

    am-vis render-dump session.jsonl.gz mach://server-foo/12 -o foo.svg
    am-vis render-dump session.jsonl.gz mach://server-foo --bird -o near.png
    am-vis render-dump session.jsonl.gz --map -o map.dot
    am-vis inspect-dump session.jsonl.gz

Machines are rebuilt from their schema records (``am.Machine(schema, id=...)``)
and set to the clock after the requested transition with ``sync_clock``, then
drawn with :mod:`asyncmachine.vis`.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import re
import signal
import sys
from collections import deque
from collections.abc import Iterable
from importlib import metadata
from typing import Any

import asyncmachine as am

from .history import Dump, DumpError, MachineDump, read_dump
from .telemetry import ENV_ADDR

__all__ = ["build_machine", "dump_links", "main", "parse_machine_url"]

log = logging.getLogger("asyncmachine.vis")

DEFAULT_OUTPUT = "am-vis.svg"
BIRD_DISTANCE = 3
"""Hops from the requested machine drawn by ``--bird`` unless ``-d`` sets them."""

# An RPC server logs the client's machine id when the handshake completes.
_HANDSHAKE = re.compile(r"\bHandshakeDone\b.*\bid=([^\s,)]+)")


def _version() -> str:
    try:
        return metadata.version("asyncmachine")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def parse_machine_url(text: str) -> tuple[str, str | None]:
    """Split ``mach://ID`` or ``mach://ID/N`` into the id and N (or None).

    Raises:
        ValueError: the text does not start with ``mach://`` or has no id.
    """
    if not text.startswith("mach://"):
        raise ValueError(f"invalid machine URL {text!r}: expected mach://ID[/N]")
    rest = text[len("mach://") :].strip("/")
    mach_id, _, tx = rest.partition("/")
    if not mach_id:
        raise ValueError(f"invalid machine URL {text!r}: the machine id is missing")
    return mach_id, tx or None


def clock_at(machine: MachineDump, tx: str | None) -> list[int]:
    """Return the clock after transition `tx` of `machine`, in state order.

    `tx` is a 1-based number (0 is the clock of the schema record, before the
    first transition) or ``id:`` and a transition id (ids can be all digits,
    so a bare number is always a position); None means the last transition.

    Raises:
        ValueError: no such transition.
    """
    records = machine.records
    states = machine.schema.states
    if tx is None:
        clock = records[-1].clock_after if records else machine.schema.clock
    elif not tx.startswith("id:"):
        if not tx.isdigit():
            raise ValueError(
                f"invalid transition {tx!r}: use a number (1 is the first "
                f"transition) or id:TRANSITION_ID"
            )
        number = int(tx)
        if number > len(records):
            raise ValueError(
                f"machine {machine.schema.id!r} has {len(records)} transitions, "
                f"not {number}"
            )
        clock = records[number - 1].clock_after if number else machine.schema.clock
    else:
        wanted = tx[len("id:") :]
        for record in records:
            if record.id == wanted:
                clock = record.clock_after
                break
        else:
            raise ValueError(
                f"machine {machine.schema.id!r} has no transition with id {tx!r}"
            )
    return list(clock) + [0] * (len(states) - len(clock))


def build_machine(machine: MachineDump, tx: str | None = None) -> am.Machine:
    """Rebuild a machine from its schema record, at the clock after `tx`."""
    schema = machine.schema
    states = {
        name: am.State.from_dict(schema.schema.get(name, {})) for name in schema.states
    }
    mach = am.Machine(
        states,
        id=schema.id,
        state_order=schema.states,
        parent_id=schema.parent,
        tags=schema.tags,
        strict=False,
    )
    if schema.groups:
        try:
            mach.set_groups(
                {k: list(v) for k, v in schema.groups.items()}, schema.groups_order
            )
        except (am.StateError, TypeError) as err:
            log.warning("groups of machine %s were not restored: %s", schema.id, err)
    mach.sync_clock(clock_at(machine, tx))
    return mach


def dump_links(dump: Dump) -> list[Any]:
    """Return the links between the machines of `dump` for ``vis.network_graph``.

    Mirrors come from ``src-id:<id>`` tags, RPC connections from an RPC server's
    log line of ``HandshakeDone`` naming ``id=<client id>``. Parents are not
    links: the diagram draws them from the machines' parent ids.
    """
    from . import vis

    ids = {m.schema.id for m in dump.machines}
    links = []
    for machine in dump.machines:
        schema = machine.schema
        for tag in schema.tags:
            if tag.startswith("src-id:") and tag[len("src-id:") :] in ids:
                links.append(vis.Link("mirror", schema.id, None, tag[7:], None))
        if "rpc-server" not in schema.tags:
            continue
        clients: dict[str, None] = {}
        for record in machine.records:
            for line in record.log:
                match = _HANDSHAKE.search(line)
                if match and match.group(1) in ids:
                    clients[match.group(1)] = None
        for client in clients:
            links.append(vis.Link("rpc", client, None, schema.id, None))
    return links


def _neighbourhood(
    dump: Dump, links: Iterable[Any], start: str, distance: int
) -> list[str]:
    """Return the ids within `distance` hops of `start`, in dump order."""
    adjacent: dict[str, set[str]] = {m.schema.id: set() for m in dump.machines}
    for machine in dump.machines:
        parent = machine.schema.parent
        if parent in adjacent:
            adjacent[machine.schema.id].add(parent)
            adjacent[parent].add(machine.schema.id)
    for link in links:
        adjacent[link.from_machine].add(link.to_machine)
        adjacent[link.to_machine].add(link.from_machine)
    seen = {start: 0}
    queue = deque([start])
    while queue:
        current = queue.popleft()
        if seen[current] >= distance:
            continue
        for other in adjacent[current]:
            if other not in seen:
                seen[other] = seen[current] + 1
                queue.append(other)
    return [m.schema.id for m in dump.machines if m.schema.id in seen]


def render_dump(args: argparse.Namespace) -> int:
    from . import vis

    dump = read_dump(args.dump)
    if not dump.machines:
        raise ValueError(f"{args.dump} contains no machines")
    mach_id, tx = (None, None)
    if args.url:
        mach_id, tx = parse_machine_url(args.url)
        dump.machine(mach_id)
    elif not args.map and len(dump.machines) > 1:
        ids = ", ".join(m.schema.id for m in dump.machines)
        raise ValueError(
            f"the dump contains {len(dump.machines)} machines; name one as "
            f"mach://ID[/N] or use --map. Machines: {ids}"
        )
    else:
        mach_id = dump.machines[0].schema.id

    links = dump_links(dump)
    distance = args.distance
    if args.map:
        chosen = [m.schema.id for m in dump.machines]
    elif args.bird or distance is not None:
        hops = BIRD_DISTANCE if distance is None else distance
        chosen = _neighbourhood(dump, links, mach_id, hops)  # type: ignore[arg-type]
    else:
        chosen = [mach_id]  # type: ignore[list-item]

    machines = [
        build_machine(dump.machine(i), tx if i == mach_id else None) for i in chosen
    ]
    if len(machines) == 1 and not args.map:
        graph = vis.machine_graph(machines[0])
    else:
        drawn = set(chosen)
        shown = [
            link
            for link in links
            if link.from_machine in drawn and link.to_machine in drawn
        ]
        graph = vis.network_graph(machines, shown, states=not args.map)
    target = vis.render(graph, args.output)
    log.info("rendered %d machines to %s", len(machines), target)
    print(f"wrote {target} ({len(machines)} machines)")
    return 0


def _format_time(value: float) -> str:
    if not value:
        return "-"
    moment = datetime.datetime.fromtimestamp(value, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def inspect_dump(args: argparse.Namespace) -> int:
    dump = read_dump(args.dump)
    transitions = sum(len(m.records) for m in dump.machines)
    print(
        f"{args.dump}: version {dump.version}, created {dump.created}, "
        f"{len(dump.machines)} machines, {transitions} transitions"
    )
    for machine in dump.machines:
        schema = machine.schema
        records = machine.records
        clock = clock_at(machine, None)
        active = [n for n, t in zip(schema.states, clock, strict=True) if t % 2]
        print()
        print(f"{schema.id}")
        if schema.parent:
            print(f"  parent: {schema.parent}")
        if schema.tags:
            print(f"  tags: {' '.join(schema.tags)}")
        print(f"  states ({len(schema.states)}): {' '.join(schema.states)}")
        print(f"  transitions: {len(records)}", end="")
        if records:
            canceled = sum(1 for r in records if r.result != 0)
            print(
                f" ({canceled} canceled), {_format_time(records[0].time)} to "
                f"{_format_time(records[-1].time)}",
                end="",
            )
        print()
        if schema.dropped:
            print(f"  dropped by telemetry: {schema.dropped}")
        ticks = " ".join(f"{n}:{t}" for n, t in zip(schema.states, clock, strict=True))
        print(f"  last clock: ({ticks})")
        print(f"  active: {' '.join(active) or '-'}")
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="am-vis",
        description="Draw machines from am-dbg dump files, or summarise a dump.",
    )
    parser.add_argument("--version", action="version", version=_version())
    parser.add_argument(
        "--log-level",
        default="WARNING",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="level of the log on stderr (default: WARNING)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    render = commands.add_parser(
        "render-dump",
        help="draw a machine (or several) as SVG, PNG or DOT",
        description=(
            "Rebuild machines from a dump and draw them. The output format follows "
            "the extension: .svg, .png (both need graphviz's dot program), .dot."
        ),
    )
    render.add_argument("dump", metavar="DUMP", help="the dump file")
    render.add_argument(
        "url",
        nargs="?",
        metavar="mach://ID[/N]",
        help="the machine, and the transition whose clock to show: a 1-based "
        "number, 0 for the clock before the first, or id:TRANSITION_ID; the last "
        "transition by default",
    )
    render.add_argument(
        "--bird",
        action="store_true",
        help=f"also draw the machines within {BIRD_DISTANCE} hops (parents, mirrors, "
        f"RPC connections)",
    )
    render.add_argument(
        "-d",
        "--distance",
        type=int,
        metavar="DISTANCE",
        help="draw the machines within DISTANCE hops of the requested one",
    )
    render.add_argument(
        "--map",
        action="store_true",
        help="draw every machine as a box, with parents and links, no states",
    )
    render.add_argument(
        "-o",
        "--output",
        default=DEFAULT_OUTPUT,
        metavar="FILE",
        help=f"the file to write (default: {DEFAULT_OUTPUT})",
    )
    render.set_defaults(run=render_dump)

    inspect = commands.add_parser(
        "inspect-dump",
        help="print each machine's states, transition count and last clock",
    )
    inspect.add_argument("dump", metavar="DUMP", help="the dump file")
    inspect.set_defaults(run=inspect_dump)
    args = parser.parse_args(argv)
    if getattr(args, "distance", None) is not None and args.distance < 0:
        parser.error(f"-d must be 0 or more, got {args.distance}")
    return args


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    """Run am-vis and return the exit status."""
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    logging.basicConfig(
        level=args.log_level, format="%(name)s %(levelname)s %(message)s"
    )
    # Rebuilt machines must not report to a debugger named in the environment.
    os.environ.pop(ENV_ADDR, None)
    try:
        return int(args.run(args))
    except (DumpError, ValueError, KeyError, OSError, RuntimeError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"am-vis: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
