"""Execute every notebook in notebooks/ with a real kernel through nbclient."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from .conftest import REPO_NOTEBOOKS

NOTEBOOKS = sorted(REPO_NOTEBOOKS.glob("*.ipynb"))

# Text each notebook must print or display, beyond the checks of every notebook.
EXPECTED_TEXT = {
    "01-basics.ipynb": [
        "executed (Start:1 Ready:1 Online:1)",
        "Msg tick: 3",
        "message: handled",
        "ready: (Start:",
        "[add] Msg -> +Msg (executed)",
    ],
    "02-live-diagram.ipynb": [
        "worker (Start:1 Done:1) [Idle:",
        "Job tick: 16",
    ],
    "03-debugger.ipynb": [
        "transitions received: 12",
        "add Job -> executed",
        "after: (Start:1 Working:1 Job:1)",
        "add Working -> canceled",
    ],
    "04-distributed.ipynb": [
        "server-foo received: ['hi']",
        "clocks equal: True",
        "'message 4']",
        "1. server-foo",
        "last message: from am-repl",
        "address files left: []",
    ],
}


def test_every_notebook_has_expectations() -> None:
    assert [path.name for path in NOTEBOOKS] == sorted(EXPECTED_TEXT)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_stored_without_outputs(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)

    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: a cell has stored outputs"
            assert cell.execution_count is None


@pytest.mark.usefixtures("need_dot")
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes(path: Path, tmp_path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=60,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )

    client.execute()

    texts: list[str] = []
    svgs: list[str] = []
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        for output in cell.outputs:
            assert output.output_type != "error", f"{output.ename}: {output.evalue}"
            if output.output_type == "stream":
                texts.append(output.text)
            elif "data" in output:
                texts.append(output.data.get("text/plain", ""))
                if "image/svg+xml" in output.data:
                    svgs.append(output.data["image/svg+xml"])
    text = "\n".join(texts)
    assert svgs, f"{path.name} displayed no SVG diagram"
    for svg in svgs:
        assert svg.startswith("<svg")
    assert any(re.search(r">tick \d+</text>", svg) for svg in svgs)
    assert re.search(r"\(\w+:\d+", text), "no state with its tick in the text outputs"
    for expected in EXPECTED_TEXT[path.name]:
        assert expected in text, f"{path.name}: {expected!r} not in the outputs"
