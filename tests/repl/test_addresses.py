"""Address parsing, address files and directory scans of the shell."""

from __future__ import annotations

import asyncio

import pytest

from amrepl import (
    Address,
    AddressError,
    AddressWatcher,
    parse_address,
    read_directory,
    read_file,
)
from asyncmachine.rpc.repl import address_file_name


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:7001", Address("127.0.0.1", 7001)),
        ("  localhost:80\n", Address("localhost", 80)),
        ("[::1]:7001", Address("::1", 7001)),
        ("127.0.0.1:7001/", Address("127.0.0.1", 7001, "/")),
        ("127.0.0.1:7001/repl/foo", Address("127.0.0.1", 7001, "/repl/foo")),
    ],
)
def test_address_parsed(text, expected):
    assert parse_address(text) == expected


@pytest.mark.parametrize(
    "text", ["", "127.0.0.1", "127.0.0.1:", ":7001", "host:port", "h:0", "h:70000"]
)
def test_invalid_address_rejected(text):
    with pytest.raises(AddressError, match="address"):
        parse_address(text)


def test_address_text_and_url():
    assert str(Address("::1", 5)) == "[::1]:5"
    assert Address("h", 5, "/").ws_url == "ws://h:5/"
    assert Address("::1", 5, "/x").ws_url == "ws://[::1]:5/x"


def test_read_file_with_comments(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("# machines\n127.0.0.1:1 # foo\n\n127.0.0.1:2/\n")
    entries = read_file(path)
    assert [entry.address for entry in entries] == [
        Address("127.0.0.1", 1),
        Address("127.0.0.1", 2, "/"),
    ]
    assert entries[0].key != entries[1].key
    assert entries[0].origin == str(path)


def test_read_file_reports_bad_line(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("127.0.0.1:1\nnonsense\n")
    with pytest.raises(AddressError, match=r"list.txt:2: invalid address"):
        read_file(path)


def test_read_directory_recursive(tmp_path):
    (tmp_path / "nested").mkdir()
    (tmp_path / address_file_name("server-foo")).write_text("127.0.0.1:1\n")
    (tmp_path / "nested" / address_file_name("a/b")).write_text("127.0.0.1:2\n")
    (tmp_path / ".hidden.addr").write_text("127.0.0.1:3\n")
    (tmp_path / "other.txt").write_text("127.0.0.1:4\n")
    (tmp_path / "empty.addr").write_text("")
    (tmp_path / "broken.addr").write_text("garbage\n")

    entries, problems = read_directory(tmp_path)
    assert sorted(entry.hint_id for entry in entries) == ["a/b", "server-foo"]
    assert len(problems) == 2
    assert any("empty.addr is empty" in problem for problem in problems)
    assert any("broken.addr:1: invalid address" in problem for problem in problems)


def test_read_missing_directory(tmp_path):
    with pytest.raises(AddressError) as raised:
        read_directory(tmp_path / "missing")
    message = str(raised.value)
    assert message.startswith(f"address directory {tmp_path / 'missing'} does not")
    assert "address files (*.addr)" in message
    assert "start the server first or check the path" in message


def test_read_file_as_directory(tmp_path):
    listing = tmp_path / "addresses.txt"
    listing.write_text("127.0.0.1:7001\n")
    with pytest.raises(AddressError) as raised:
        read_directory(listing)
    assert str(raised.value) == (
        f"address directory {listing} is not a directory "
        "(use -f FILE for a file of addresses)"
    )


def test_watcher_applies_changes_only(tmp_path):
    applied = []
    reported = []

    async def apply(entries):
        applied.append([str(entry.address) for entry in entries])

    async def scenario():
        watcher = AddressWatcher(
            lambda: read_directory(tmp_path), apply, reported.append, 0.01
        )
        await watcher.poll_once()
        (tmp_path / "a.addr").write_text("127.0.0.1:1\n")
        await watcher.poll_once()
        await watcher.poll_once()
        (tmp_path / "bad.addr").write_text("x\n")
        await watcher.poll_once()
        await watcher.poll_once()
        (tmp_path / "a.addr").unlink()
        await watcher.poll_once()

    asyncio.run(scenario())
    assert applied == [[], ["127.0.0.1:1"], []]
    # A problem is reported once while it lasts.
    assert len(reported) == 1
    assert "bad.addr:1: invalid address" in reported[0]
