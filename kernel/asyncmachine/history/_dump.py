"""Dump files: gzip-compressed JSON lines holding the records of many machines.

The first line is a header ``{"format", "version", "created"}``; then, for each
machine, its schema record followed by its transition records, oldest first.
``docs/dump-format.md`` describes every field.

Usage::

    from asyncmachine import history

    history.write_dump("session.jsonl.gz", [history.MachineDump(schema, records)])
    dump = history.read_dump("session.jsonl.gz")
    for machine in dump.machines:
        print(machine.schema.id, len(machine.records))
"""

from __future__ import annotations

import datetime
import gzip
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._base import History
from ._records import MachineSchema, TxRecord

__all__ = [
    "DUMP_FORMAT",
    "DUMP_VERSION",
    "Dump",
    "DumpError",
    "MachineDump",
    "read_dump",
    "write_dump",
]

DUMP_FORMAT = "asyncmachine-dbg-dump"
"""The ``format`` value of a dump's header line."""

DUMP_VERSION = 1
"""The dump format version this module writes and the newest it reads."""


class DumpError(ValueError):
    """A dump file is not valid; the message names the line."""


@dataclass
class MachineDump:
    """One machine of a dump: its schema and its transitions, oldest first."""

    schema: MachineSchema
    records: list[TxRecord] = field(default_factory=list)


@dataclass
class Dump:
    """The content of a dump file."""

    created: str
    machines: list[MachineDump]
    version: int = DUMP_VERSION

    def machine(self, mach_id: str) -> MachineDump:
        """Return the machine `mach_id`.

        Raises:
            KeyError: the dump has no such machine.
        """
        for machine in self.machines:
            if machine.schema.id == mach_id:
                return machine
        known = ", ".join(m.schema.id for m in self.machines) or "none"
        raise KeyError(f"no machine {mach_id!r} in the dump; machines: {known}")


def _encode(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def _now_rfc3339() -> str:
    now = datetime.datetime.now(datetime.UTC)
    return now.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _as_machine_dump(item: Any) -> MachineDump:
    if isinstance(item, MachineDump):
        return item
    if isinstance(item, History):
        return MachineDump(item.schema, item.records())
    schema, records = item
    return MachineDump(schema, list(records))


def write_dump_to(
    stream: Any, machines: Iterable[Any], *, created: str | None = None
) -> int:
    """Write the uncompressed JSON lines of a dump to `stream` (a binary file).

    Returns the number of transition records written.
    """
    stream.write(
        _encode(
            {
                "format": DUMP_FORMAT,
                "version": DUMP_VERSION,
                "created": created or _now_rfc3339(),
            }
        )
    )
    count = 0
    for item in machines:
        machine = _as_machine_dump(item)
        stream.write(_encode(machine.schema.to_json()))
        lines = [_encode(record.to_json()) for record in machine.records]
        stream.write(b"".join(lines))
        count += len(lines)
    return count


def write_dump(
    path: str | os.PathLike[str],
    machines: Iterable[
        MachineDump | History | tuple[MachineSchema, Iterable[TxRecord]]
    ],
    *,
    created: str | None = None,
) -> Path:
    """Write a dump file of `machines`, replacing `path` atomically.

    Args:
        path: the file to write; ``.jsonl.gz`` is the usual extension.
        machines: :class:`MachineDump` objects, histories, or
            ``(schema, records)`` pairs.
        created: the header's creation time (RFC 3339); now by default.

    Returns:
        The path written.

    Raises:
        OSError: the file cannot be written.
    """
    target = Path(path)
    partial = target.with_name(target.name + ".partial")
    try:
        with open(partial, "wb") as raw:
            # No file name and mtime=0 keep the bytes of equal dumps equal.
            with gzip.GzipFile(
                filename="", fileobj=raw, mode="wb", compresslevel=6, mtime=0
            ) as gz:
                write_dump_to(gz, machines, created=created)
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return target


def read_dump(path: str | os.PathLike[str]) -> Dump:
    """Read a dump file written by :func:`write_dump` or am-dbg.

    Raises:
        DumpError: the file is not a dump, is of a newer version, or has an
            invalid line (the message names it).
        OSError: the file cannot be read.
    """
    name = os.fspath(path)
    try:
        with gzip.open(name, "rb") as stream:
            return read_dump_from(stream, name)
    except (gzip.BadGzipFile, EOFError) as err:
        raise DumpError(f"{name}: not a gzip-compressed dump: {err}") from None


def read_dump_from(stream: Iterable[bytes], name: str = "<dump>") -> Dump:
    """Read the uncompressed JSON lines of a dump from `stream`."""
    lines = iter(stream)
    header = _read_header(next(lines, b""), name)
    machines: list[MachineDump] = []
    by_id: dict[str, MachineDump] = {}
    loads = json.loads
    from_json = TxRecord.from_json
    current: MachineDump | None = None
    for number, line in enumerate(lines, start=2):
        if not line.strip():
            continue
        try:
            data = loads(line)
            kind = data.get("kind")
            if kind == "tx":
                if current is None or data.get("mach") != current.schema.id:
                    current = by_id.get(data.get("mach"))
                    if current is None:
                        raise ValueError(
                            f"transition of machine {data.get('mach')!r} before "
                            f"its schema record"
                        )
                current.records.append(from_json(data))
            elif kind == "schema":
                current = MachineDump(MachineSchema.from_json(data))
                if current.schema.id in by_id:
                    raise ValueError(
                        f"a second schema record of machine {current.schema.id!r}"
                    )
                by_id[current.schema.id] = current
                machines.append(current)
            else:
                raise ValueError(f"unknown record kind {kind!r}")
        except (ValueError, AttributeError) as err:
            raise DumpError(f"{name}, line {number}: {err}") from None
    return Dump(header["created"], machines, header["version"])


def _read_header(line: bytes, name: str) -> dict[str, Any]:
    try:
        header = json.loads(line)
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("format") != DUMP_FORMAT:
        raise DumpError(
            f"{name}, line 1: not an asyncmachine dump; the first line must be "
            f'a header with "format": "{DUMP_FORMAT}"'
        )
    version = header.get("version")
    if type(version) is not int or version < 1:
        raise DumpError(f"{name}, line 1: invalid dump version {version!r}")
    if version > DUMP_VERSION:
        raise DumpError(
            f"{name}: dump version {version} is newer than this reader "
            f"(version {DUMP_VERSION}); upgrade asyncmachine"
        )
    if not isinstance(header.get("created"), str):
        raise DumpError(f'{name}, line 1: header without a "created" time')
    return header
