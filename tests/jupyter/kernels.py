"""Helpers to run code in a real ipykernel and read its IOPub messages."""

from __future__ import annotations

import queue
import time
from typing import Any

from jupyter_client.blocking.client import BlockingKernelClient

# Seconds one cell may take; generous because kernels share two cores with
# other test suites.
CELL_TIMEOUT = 60.0


def execute(client: BlockingKernelClient, code: str) -> list[dict[str, Any]]:
    """Run `code` and return the IOPub messages of its execution until idle.

    Raises:
        AssertionError: the cell raised, or did not finish in CELL_TIMEOUT.
    """
    msg_id = client.execute(code)
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + CELL_TIMEOUT
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"cell did not finish in {CELL_TIMEOUT} s:\n{code}"
        try:
            message = client.get_iopub_msg(timeout=remaining)
        except queue.Empty:
            continue
        if message["parent_header"].get("msg_id") != msg_id:
            continue
        messages.append(message)
        kind = message["msg_type"]
        if kind == "error":
            content = message["content"]
            raise AssertionError(
                f"cell raised {content['ename']}: {content['evalue']}\n{code}"
            )
        if kind == "status" and message["content"]["execution_state"] == "idle":
            return messages


def stream_text(messages: list[dict[str, Any]]) -> str:
    """Return the stdout text of `messages`."""
    return "".join(
        m["content"]["text"]
        for m in messages
        if m["msg_type"] == "stream" and m["content"]["name"] == "stdout"
    )
