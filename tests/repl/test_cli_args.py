"""am-repl's option parsing, in-process: which command lines fail and with what."""

from __future__ import annotations

import pytest

from amrepl._cli import parse_args


def usage_error(capsys, argv: list[str]) -> str:
    """Return the error line that parse_args prints before exiting with 2."""
    with pytest.raises(SystemExit) as exited:
        parse_args(argv)
    assert exited.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_command_without_separator_after_dir(capsys):
    error = usage_error(capsys, ["-d", "/tmp/am", "list"])
    assert error == (
        "am-repl: error: 'list' is a command, not an address, so put it after "
        "'--', as in: am-repl -d /tmp/am -- list"
    )


def test_command_without_separator_keeps_arguments(capsys):
    argv = ["-f", "/tmp/am.txt", "--call-timeout", "2"]
    argv += ["add", "server-foo", "Msg", "--arg", "msg=hi there"]
    error = usage_error(capsys, argv)
    assert error.endswith(
        "as in: am-repl -f /tmp/am.txt --call-timeout 2 -- add server-foo Msg "
        "--arg 'msg=hi there'"
    )


def test_command_options_stay_with_command(capsys):
    # -f and -d after the command word are list's --offset and --disconn.
    error = usage_error(capsys, ["-d", "/tmp/am", "list", "-f", "1", "-d", "-Z"])
    assert error.endswith("as in: am-repl -d /tmp/am -- list -f 1 -d -Z")


def test_dir_after_command_moves_before_separator(capsys):
    error = usage_error(capsys, ["list", "-a", "Ready", "--dir=/tmp/am"])
    assert error.startswith("am-repl: error: 'list' is a command, not an address")
    assert error.endswith("as in: am-repl --dir=/tmp/am -- list -a Ready")


@pytest.mark.parametrize(
    ("argv", "fixed"),
    [
        (["-ad", "/tmp/am", "status"], "am-repl -ad /tmp/am -- status"),
        (["-d/tmp/am", "help"], "am-repl -d/tmp/am -- help"),
        (["--di", "/tmp/am", "help"], "am-repl --di /tmp/am -- help"),
        (
            ["--no-color", "-d", "/tmp/am", "exit"],
            "am-repl --no-color -d /tmp/am -- exit",
        ),
    ],
)
def test_command_without_separator_option_forms(capsys, argv, fixed):
    error = usage_error(capsys, argv)
    assert error.endswith(f"as in: {fixed}")


def test_command_before_separator_and_after(capsys):
    error = usage_error(capsys, ["-d", "/tmp/am", "list", "--", "status"])
    assert error == (
        "am-repl: error: 'list' is a command, not an address, and am-repl runs "
        "only the command after '--', as in: am-repl -d /tmp/am -- status"
    )


def test_invalid_option_reported_before_command(capsys):
    error = usage_error(capsys, ["--poll-interval", "0", "-d", "/tmp/am", "list"])
    assert error == (
        "am-repl: error: argument --poll-interval: expected seconds above 0, got 0"
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["-d", "/tmp/am", "127.0.0.1:7001"],
        ["-d", "/tmp/am", "127.0.0.1:7001", "list"],
        ["-f", "/tmp/am.txt", "127.0.0.1:7001", "--", "list"],
    ],
)
def test_address_with_dir_or_file_rejected(capsys, argv):
    error = usage_error(capsys, argv)
    assert error == "am-repl: error: give only one of: addresses, -f FILE, -d DIR"


def test_separator_gives_command():
    args, command = parse_args(["-d", "/tmp/am", "--", "list", "-a", "Ready"])
    assert args.dir == "/tmp/am"
    assert args.addresses == []
    assert command == ["list", "-a", "Ready"]


def test_command_after_address_names_fix(capsys):
    error = usage_error(capsys, ["127.0.0.1:7001", "list", "-a", "Ready"])
    assert error == (
        "am-repl: error: 'list' is a command, not an address, so put it after "
        "'--', as in: am-repl 127.0.0.1:7001 -- list -a Ready"
    )


def test_command_without_endpoints_names_fix(capsys):
    error = usage_error(capsys, ["list"])
    assert error == (
        "am-repl: error: 'list' is a command, not an address, so name the "
        "endpoints first and put it after '--', as in: am-repl -d DIR -- list"
    )
