"""The foo/bar example: ``server-foo`` and ``browser-bar-<id>``.

Two machines share one schema family. The user submits messages in bar, and
foo prints them. foo sends "hello" to bar until bar's ``Msg`` tick reaches a
limit, then foo gets bored and bar prints "foo is bored".

``am-demo`` (``python -m asyncmachine.demo``) runs server-foo on the server and
serves the offline JupyterLite page whose bar notebook runs browser-bar-<id> in
the browser (:mod:`asyncmachine.demo.server`, :mod:`asyncmachine.demo.page`).
``am-demo --headless`` runs that scenario in headless Chromium, and
``am-demo --local`` runs both machines in one process::

    python -m asyncmachine.demo --local --hello-every 0.5 --bored-after 1.5

or from code::

    result = asyncio.run(run_demo(DemoConfig(hello_every=0.1)))
    print("\\n".join(result.transcript))

This package imports without aiohttp, so the page's modules also run in Pyodide.
"""

from .run import DemoConfig, DemoResult, new_page_id, run_demo
from .states import BAR_SCHEMA, FOO_SCHEMA, SHARED_SCHEMA

__all__ = [
    "BAR_SCHEMA",
    "FOO_SCHEMA",
    "SHARED_SCHEMA",
    "DemoConfig",
    "DemoResult",
    "new_page_id",
    "run_demo",
]
