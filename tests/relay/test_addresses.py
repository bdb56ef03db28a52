"""Address parsing, allowlists and machine ids."""

from __future__ import annotations

import pytest

from asyncmachine.relay._addresses import (
    AddressAllowlist,
    format_address,
    parse_address,
    validate_machine_id,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        (" LocalHost:12733 ", ("localhost", 12733)),
        ("[::1]:80", ("::1", 80)),
        ("example.org:65535", ("example.org", 65535)),
    ],
)
def test_parse_address_valid(text, expected):
    assert parse_address(text) == expected


@pytest.mark.parametrize(
    "text", ["", "127.0.0.1", ":80", "host:", "host:-1", "host:65536", "a/b:1", "h:x"]
)
def test_parse_address_invalid(text):
    with pytest.raises(ValueError, match="invalid"):
        parse_address(text)


def test_format_address_brackets_ipv6():
    assert format_address("127.0.0.1", 5) == "127.0.0.1:5"
    assert format_address("::1", 5) == "[::1]:5"


def test_allowlist_matches_exact_entries():
    allowlist = AddressAllowlist(["127.0.0.1:0", "localhost:6831"])
    assert ("127.0.0.1", 0) in allowlist
    assert ("localhost", 6831) in allowlist
    assert ("127.0.0.1", 6831) not in allowlist
    assert ("127.0.0.1", 1234) not in allowlist
    assert "127.0.0.1:0" not in allowlist
    assert not AddressAllowlist([])


@pytest.mark.parametrize(
    "machine_id", ["browser-bar-x7k", "a", "repl.bar_1", "9" * 128]
)
def test_machine_id_valid(machine_id):
    validate_machine_id(machine_id)


@pytest.mark.parametrize(
    "machine_id", ["", ".hidden", "../x", "a/b", "a\\b", "a b", "-x", "9" * 129, "é"]
)
def test_machine_id_invalid(machine_id):
    with pytest.raises(ValueError, match="invalid machine id"):
        validate_machine_id(machine_id)
