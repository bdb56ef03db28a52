"""live() in a real ipykernel, driven by a background asyncio task.

nbclient keeps only the messages of the cell it runs, so this test reads the
kernel's IOPub messages itself: the updates arrive after the cell finished.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from typing import Any

import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import start_new_kernel

from .kernels import CELL_TIMEOUT

pytestmark = pytest.mark.usefixtures("need_dot")

START_TASK = """
%load_ext asyncmachine.jupyter
import asyncio
import asyncmachine as am
from asyncmachine.jupyter import live

mach = am.Machine(
    {"Start": am.State(), "Step": am.State(multi=True), "Done": am.State()},
    id="kernel-live",
)
view = live(mach, min_interval=0.05)


async def drive():
    mach.add("Start")
    for _ in range(6):
        await asyncio.sleep(0.05)
        mach.add("Step")
    mach.add("Done")


task = asyncio.create_task(drive())
"""
FINAL = "kernel-live (Start:1 Step:11 Done:1) [Exception:0]"


@pytest.fixture
def client() -> Iterator[BlockingKernelClient]:
    manager, kernel_client = start_new_kernel(
        kernel_name="python3", startup_timeout=CELL_TIMEOUT
    )
    try:
        yield kernel_client
    finally:
        kernel_client.stop_channels()
        manager.shutdown_kernel(now=True)


def read_until(
    client: BlockingKernelClient, done: Any, what: str
) -> list[dict[str, Any]]:
    """Return IOPub messages up to the first for which `done(message)` is true."""
    messages = []
    deadline = time.monotonic() + CELL_TIMEOUT
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {what} in {CELL_TIMEOUT} s; got {messages}"
        try:
            message = client.get_iopub_msg(timeout=remaining)
        except queue.Empty:
            continue
        messages.append(message)
        if done(message):
            return messages


def test_background_task_updates_live_display(client: BlockingKernelClient) -> None:
    msg_id = client.execute(START_TASK)

    def cell_idle(message: dict[str, Any]) -> bool:
        return (
            message["msg_type"] == "status"
            and message["parent_header"].get("msg_id") == msg_id
            and message["content"]["execution_state"] == "idle"
        )

    during_cell = read_until(client, cell_idle, "end of the cell")
    errors = [m["content"] for m in during_cell if m["msg_type"] == "error"]
    assert errors == []
    displays = [m for m in during_cell if m["msg_type"] == "display_data"]
    assert len(displays) == 1
    display_id = displays[0]["content"]["transient"]["display_id"]
    assert displays[0]["content"]["data"]["image/svg+xml"].startswith("<svg")

    def final_update(message: dict[str, Any]) -> bool:
        return (
            message["msg_type"] == "update_display_data"
            and message["content"]["data"]["text/plain"] == FINAL
        )

    after_cell = read_until(client, final_update, "update with the final state")

    updates = [
        m for m in during_cell + after_cell if m["msg_type"] == "update_display_data"
    ]
    late = [m for m in after_cell if m["msg_type"] == "update_display_data"]
    # The task ran after the cell ended, so its updates came with no cell
    # running, each for the display the cell created.
    assert late
    for update in updates:
        assert update["content"]["transient"]["display_id"] == display_id
        assert update["content"]["data"]["image/svg+xml"].startswith("<svg")
    # Eight transitions, at most one update each.
    assert len(updates) <= 8
    assert ">tick 11</text>" in late[-1]["content"]["data"]["image/svg+xml"]
