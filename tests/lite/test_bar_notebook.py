"""The bar notebook in headless Chromium: the offline site runs asyncmachine.

The page loads from a local HTTP server on 127.0.0.1, every request to another
host is aborted and counted, and the test runs all cells of bar.ipynb in the
Pyodide kernel. Its screenshot goes to build/lite-screenshot.png.
"""

from __future__ import annotations

import base64
import contextlib
import re
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

import asyncmachine as am
from asyncmachine.demo.states import BAR_SCHEMA
from tests.conftest import REPO_ROOT
from tests.lite.conftest import CHROMIUM_ARGS, SinkProxy

try:
    from playwright.sync_api import Page, Route, sync_playwright
except ImportError:  # pragma: no cover - make install provides it
    sync_playwright = None

NOTEBOOK_PATH = "notebooks/index.html?path=bar.ipynb"
SCREENSHOT = REPO_ROOT / "build" / "lite-screenshot.png"
# All cells finished within 30 s of a cold page load (headless Chromium 156 on
# a 2-core machine), so this limit leaves room for a busy machine.
OUTPUT_TIMEOUT_SECONDS = 300
LOCAL_HOSTS = {"127.0.0.1"}
NETWORK_SCHEMES = {"http", "https", "ws", "wss", "ftp"}

SVG_SELECTOR = ".jp-RenderedSVG"
WIDGET_CELL = """import ipywidgets

ipywidgets.IntSlider(value=7, description="ticks")"""
STDERR_SELECTOR = (
    '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'
)

# Reads the notebook's state in the page: the code cells' prompts ("[1]:" once
# run, "[*]:" while running), the text outputs and the first SVG output.
READ_NOTEBOOK_JS = """
() => {
  const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')]
    .map((node) => node.textContent.trim());
  const outputs = [...document.querySelectorAll('.jp-OutputArea-output')]
    .map((node) => node.textContent);
  const rendered = document.querySelector('.jp-RenderedSVG');
  let svg = null;
  if (rendered) {
    const image = rendered.querySelector('img');
    const inline = rendered.querySelector('svg');
    svg = image ? image.getAttribute('src') : inline ? inline.outerHTML : '';
  }
  return { prompts, outputs, svg };
}
"""


def expected_string_all() -> str:
    """Return string_all() of a bar machine after Start, computed in CPython."""
    mach = am.Machine(BAR_SCHEMA, id="browser-bar-expect")
    mach.add("Start")
    return mach.string_all()


def is_external(url: str) -> bool:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme in NETWORK_SCHEMES and parts.hostname not in LOCAL_HOSTS


def svg_text(source: str) -> str:
    """Decode an SVG output: a data: URL of an <img>, or inline SVG markup."""
    if not source.startswith("data:"):
        return source
    header, _, payload = source.partition(",")
    if header.endswith(";base64"):
        return base64.b64decode(payload).decode("utf-8")
    return urllib.parse.unquote(payload)


def run_all_cells(page: Page) -> None:
    """Run all cells through the Run menu, as a user would."""
    page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
    page.locator('.lm-Menu-item[data-command="runmenu:run-all"]').click()


def wait_for_cells(page: Page) -> dict:
    """Wait until the SVG output appears or every code cell has finished."""
    deadline = time.monotonic() + OUTPUT_TIMEOUT_SECONDS
    state = page.evaluate(READ_NOTEBOOK_JS)
    while time.monotonic() < deadline:
        state = page.evaluate(READ_NOTEBOOK_JS)
        finished = state["prompts"] and all(
            re.fullmatch(r"\[\d+\]:", prompt) for prompt in state["prompts"]
        )
        if state["svg"] is not None or finished:
            return state
        page.wait_for_timeout(500)
    pytest.fail(
        f"the notebook showed no SVG output within {OUTPUT_TIMEOUT_SECONDS} s; "
        f"cell prompts: {state['prompts']}, outputs: {state['outputs']}"
    )


class OfflineBrowser:
    """Headless Chromium whose requests to hosts other than 127.0.0.1 fail.

    Page and worker requests to other hosts are aborted and recorded in
    `blocked`. Chromium sends whatever else leaves the browser through the
    sink proxy, which rejects and records it.
    """

    def __init__(self, chromium: Path, proxy: SinkProxy, profile: Path) -> None:
        self.chromium = chromium
        self.proxy = proxy
        self.profile = profile
        self.blocked: list[str] = []

    def _abort_external(self, route: Route) -> None:
        self.blocked.append(route.request.url)
        route.abort("blockedbyclient")

    @contextlib.contextmanager
    def open_notebook(self, site_url: str) -> Iterator[Page]:
        """Open bar.ipynb and yield the page once its cells are shown."""
        if sync_playwright is None:
            pytest.fail(
                "the Python package playwright is missing: run `make install`, "
                "or `.venv/bin/pip install playwright` (it drives Debian's "
                "Chromium, so never run `playwright install`)"
            )
        proxy_port = self.proxy.server_address[1]
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                str(self.profile),
                executable_path=str(self.chromium),
                headless=True,
                args=[*CHROMIUM_ARGS, f"--proxy-server=http://127.0.0.1:{proxy_port}"],
                viewport={"width": 1280, "height": 900},
            )
            try:
                context.route(is_external, self._abort_external)
                page = context.pages[0] if context.pages else context.new_page()
                page.goto(f"{site_url}/{NOTEBOOK_PATH}")
                page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=120_000)
                yield page
            finally:
                context.close()

    def external_requests(self) -> list[str]:
        proxied = [f"proxy: {target}" for target in self.proxy.targets]
        return self.blocked + proxied


@pytest.fixture
def offline_browser(
    chromium_path: Path, sink_proxy: SinkProxy, tmp_path: Path
) -> OfflineBrowser:
    return OfflineBrowser(chromium_path, sink_proxy, tmp_path / "chromium-profile")


def stderr_outputs(page: Page) -> list[str]:
    return [node.inner_text() for node in page.query_selector_all(STDERR_SELECTOR)]


@pytest.mark.timeout(1800)
def test_bar_notebook_runs_offline(
    offline_browser: OfflineBrowser, site_url: str
) -> None:
    with offline_browser.open_notebook(site_url) as page:
        run_all_cells(page)
        state = wait_for_cells(page)
        errors = stderr_outputs(page)

        # The diagram may render a moment after its output node appears.
        page.wait_for_timeout(500)
        if page.query_selector(SVG_SELECTOR):
            page.locator(SVG_SELECTOR).first.scroll_into_view_if_needed()
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT))

    output = "\n".join(state["outputs"])
    assert errors == [], f"cells wrote to stderr: {errors}"
    assert re.search(r"^browser-bar-[a-z0-9]{6}$", output, re.MULTILINE), output
    assert expected_string_all() in output, output

    assert state["svg"] is not None, f"no SVG output; outputs: {output}"
    svg = svg_text(state["svg"])
    assert "<svg" in svg, svg[:200]
    assert "SubmitMsg" in svg, "the diagram lacks the bar machine's states"

    external = offline_browser.external_requests()
    assert external == [], f"requests to hosts other than 127.0.0.1: {external}"


@pytest.mark.timeout(1800)
def test_ipywidgets_render_offline(
    offline_browser: OfflineBrowser, site_url: str
) -> None:
    with offline_browser.open_notebook(site_url) as page:
        run_all_cells(page)
        wait_for_cells(page)

        # Add a cell below the last one (command mode "b"), then run it.
        page.locator(".jp-CodeCell").last.click()
        page.keyboard.press("Escape")
        page.keyboard.press("b")
        page.keyboard.press("Enter")
        page.keyboard.insert_text(WIDGET_CELL)
        page.keyboard.press("Shift+Enter")

        slider = page.wait_for_selector(
            ".widget-slider", timeout=OUTPUT_TIMEOUT_SECONDS * 1000
        )
        readout = slider.query_selector(".widget-readout")
        readout_text = readout.inner_text() if readout else None
        errors = stderr_outputs(page)
        outputs = page.evaluate(READ_NOTEBOOK_JS)["outputs"]

    assert errors == [], f"cells wrote to stderr: {errors}"
    assert readout_text == "7", f"slider readout {readout_text!r}; outputs: {outputs}"
    assert not any("IntSlider(" in text for text in outputs), (
        "the widget rendered as text, so the widget manager extension is missing"
    )

    external = offline_browser.external_requests()
    assert external == [], f"requests to hosts other than 127.0.0.1: {external}"
