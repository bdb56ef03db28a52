"""The bar page in headless Chromium across a server restart.

The page gets the token only as the relay's cookie (its kernel runs in a Web
Worker, which cannot read the page's URL). When the server stops and a new one
starts on the same port with the same token, the page's WebSocket reconnects
with that cookie, and a message typed afterwards reaches the new server.
"""

from __future__ import annotations

import asyncio
import io
import tempfile
from pathlib import Path

import pytest

from asyncmachine.demo.headless import (
    CHROMIUM_ARGS,
    SinkProxy,
    is_external,
    run_all_cells,
)
from asyncmachine.demo.server import DemoServer, ServerConfig
from asyncmachine.demo.transcript import Transcript
from tests.lite.conftest import BUILD_TIMEOUT_SECONDS, chromium_path, lite_site

__all__ = ["chromium_path", "lite_site"]

TOKEN = "browser-reconnect-token"
# Bounds each wait: a cold page load took about 15 s on a 2-core machine.
WAIT_MS = 240_000
STATUS_JS = """
(expected) => {
  const node = document.querySelector('.am-status');
  return node !== null && node.textContent.includes(expected) ? node.textContent : null;
}
"""


def make_config(site: Path, repl_dir: Path, port: int) -> ServerConfig:
    return ServerConfig(
        site_dir=site,
        repl_dir=repl_dir,
        token=TOKEN,
        port=port,
        hello_every=60.0,
        bored_after=60.0,
    )


async def scenario(site: Path, chromium: Path, repl_dir: Path) -> dict:
    from playwright.async_api import async_playwright

    first = DemoServer(make_config(site, repl_dir, 0), Transcript(io.StringIO()))
    await first.start()
    port = first.relay.port
    proxy = SinkProxy()
    await proxy.start()
    blocked: list[str] = []
    second: DemoServer | None = None

    async def abort(route):
        blocked.append(route.request.url)
        await route.abort("blockedbyclient")

    try:
        with tempfile.TemporaryDirectory() as profile:
            async with async_playwright() as playwright:
                context = await playwright.chromium.launch_persistent_context(
                    profile,
                    executable_path=str(chromium),
                    headless=True,
                    args=[
                        *CHROMIUM_ARGS,
                        f"--proxy-server=http://127.0.0.1:{proxy.port}",
                    ],
                )
                try:
                    await context.route(is_external, abort)
                    page = context.pages[0]
                    await page.goto(first.page_url)
                    await page.wait_for_selector(
                        ".jp-Notebook .jp-CodeCell", timeout=WAIT_MS
                    )
                    await run_all_cells(page)
                    status = await page.wait_for_function(
                        STATUS_JS, arg="connected to server-foo", timeout=WAIT_MS
                    )
                    bar_id = (await status.json_value()).split(":", 1)[0]
                    await first.wait_page(bar_id)
                    document_cookie = await page.evaluate("document.cookie")
                    cookies = await context.cookies()

                    await first.stop()
                    await page.wait_for_function(
                        STATUS_JS, arg="connection lost", timeout=WAIT_MS
                    )
                    second = DemoServer(
                        make_config(site, repl_dir, port), Transcript(io.StringIO())
                    )
                    await second.start()
                    await asyncio.wait_for(second.wait_page(bar_id), WAIT_MS / 1000)
                    await page.wait_for_function(
                        STATUS_JS, arg="connected to server-foo", timeout=WAIT_MS
                    )
                    box = page.locator(".am-input input")
                    await box.fill("after the restart")
                    await box.press("Enter")
                    author, _text = await asyncio.wait_for(
                        second.messages.wait_for(lambda a, t: t == "after the restart"),
                        WAIT_MS / 1000,
                    )
                finally:
                    await context.close()
    finally:
        await first.stop()
        if second is not None:
            await second.stop()
        await proxy.close()
    return {
        "bar_id": bar_id,
        "author": author,
        "port": port,
        "document_cookie": document_cookie,
        "cookies": cookies,
        "external": blocked + proxy.targets,
    }


@pytest.mark.timeout(BUILD_TIMEOUT_SECONDS + 600)
def test_page_reconnects_with_cookie(lite_site, chromium_path, tmp_path):
    result = asyncio.run(scenario(lite_site, chromium_path, tmp_path / "repl"))

    assert result["author"] == result["bar_id"]
    assert result["document_cookie"] == "", "the token cookie must be HttpOnly"
    [cookie] = [c for c in result["cookies"] if c["name"].startswith("am_relay_token_")]
    assert cookie["name"] == f"am_relay_token_{result['port']}"
    assert cookie["value"] == TOKEN
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert result["external"] == []
