"""The debugger: a telemetry collector, a terminal UI and the am-dbg command.

Run the collector inside another program::

    from asyncmachine import dbg

    async with dbg.Collector("127.0.0.1", 0) as collector:
        telemetry.attach(mach, collector.address)
        ...
        collector.dump("session.jsonl.gz")

The terminal UI needs prompt_toolkit and is imported on first use
(:func:`asyncmachine.dbg.tui.run_tui`). In a notebook, :func:`inspector` steps
through the recorded transitions with ipywidgets, imported on first use.
"""

from ._collector import DEFAULT_MAX_RECORDS, Collector, MachineData
from .notebook import Inspector, inspector

__all__ = ["DEFAULT_MAX_RECORDS", "Collector", "Inspector", "MachineData", "inspector"]
