"""The foo/bar example, run in one process.

Two machines, ``server-foo`` and ``browser-bar-<id>``, share one schema family.
A scripted user submits messages in bar, and foo prints them. foo sends "hello"
to bar until bar's ``Msg`` tick reaches a limit, then foo gets bored and bar
prints "foo is bored".

Usage::

    python -m asyncmachine.demo --hello-every 0.5 --bored-after 1.5

or from code::

    result = asyncio.run(run_demo(DemoConfig(hello_every=0.1)))
    print("\\n".join(result.transcript))
"""

from .run import DemoConfig, DemoResult, run_demo
from .states import BAR_SCHEMA, FOO_SCHEMA, SHARED_SCHEMA

__all__ = [
    "BAR_SCHEMA",
    "FOO_SCHEMA",
    "SHARED_SCHEMA",
    "DemoConfig",
    "DemoResult",
    "run_demo",
]
