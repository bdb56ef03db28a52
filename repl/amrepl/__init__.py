"""Interactive shell for asyncmachine machines (installed with the `repl` extra).

The shell connects to a machine's REPL endpoint over rpyc and uses
prompt_toolkit for line editing. Nothing is exported yet.
"""

__all__: list[str] = []
