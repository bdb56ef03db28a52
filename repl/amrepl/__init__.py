"""am-repl: a shell over the REPL endpoints of asyncmachine machines.

A machine exposes an endpoint with :func:`asyncmachine.rpc.repl.expose_repl`. The
shell connects to one address, the addresses in a file, or the ``*.addr`` files in
a directory, and then lists, mutates and waits on every machine at once::

    am-repl -d /tmp/am-repl                  # interactive shell
    am-repl -d /tmp/am-repl -- list -a Ready # one command, then exit

From Python, the same pieces run on an asyncio loop::

    pool = Pool()
    await pool.apply(command_line_entries(["127.0.0.1:7001"]))
    await pool.wait_first_attempts()
    runner = Runner(pool, Output())
    status = await runner.run_line("add . Foo --arg msg=hi")
    await pool.close()
"""

from ._addresses import (
    Address,
    AddressEntry,
    AddressError,
    AddressWatcher,
    command_line_entries,
    parse_address,
    read_directory,
    read_file,
)
from ._cli import main
from ._commands import COMMANDS, CommandError, Runner, UsageError, parse_arg_value
from ._output import Output
from ._pool import LinkStatus, MachineLink, NotConnectedError, Pool, WaitTimeoutError
from ._shell import ReplCompleter, default_history_path, open_history, run_shell

__all__ = [
    "COMMANDS",
    "Address",
    "AddressEntry",
    "AddressError",
    "AddressWatcher",
    "CommandError",
    "LinkStatus",
    "MachineLink",
    "NotConnectedError",
    "Output",
    "Pool",
    "ReplCompleter",
    "Runner",
    "UsageError",
    "WaitTimeoutError",
    "command_line_entries",
    "default_history_path",
    "main",
    "open_history",
    "parse_address",
    "parse_arg_value",
    "read_directory",
    "read_file",
    "run_shell",
]
