"""Static site: content types, index and redirects, no listings, no traversal."""

from __future__ import annotations

import asyncio
import os

import aiohttp
import pytest

from tests.relay.helpers import LOCALHOST, running_relay

SECRET = "secret outside the site"

SITE_FILES = {
    "index.html": ("<html>root</html>", "text/html; charset=utf-8"),
    "lab/index.html": ("<html>lab</html>", "text/html; charset=utf-8"),
    "static/pyodide/pyodide.mjs": ("export {}", "text/javascript"),
    "static/pyodide/pyodide.js": ("var x;", "text/javascript"),
    "static/pyodide/pyodide.asm.wasm": ("\0asm", "application/wasm"),
    "static/pyodide/pyodide-lock.json": ("{}", "application/json"),
    "static/pyodide/rpyc-6.0.2-py3-none-any.whl": ("PK", "application/zip"),
    "static/pyodide/python_stdlib.zip": ("PK", "application/zip"),
    "files/bar.ipynb": ("{}", "application/x-ipynb+json"),
    "build/1031.b91a70b.js": ("var y;", "text/javascript"),
    "build/af6397503fcefbd61397.woff2": ("wOF2", "font/woff2"),
    "static/pyodide/comm-0.2.3-0a1b2c3d4e5f6-py3-none-any.whl": (
        "PK",
        "application/zip",
    ),
    "bootstrap.js": ("var z;", "text/javascript"),
}
IMMUTABLE = "public, max-age=31536000, immutable"
# Assets named by a hash of their content are cached for good, files that a new
# build changes under the same name are revalidated, the rest get no header.
CACHE_CONTROL = {
    "build/1031.b91a70b.js": IMMUTABLE,
    "build/af6397503fcefbd61397.woff2": IMMUTABLE,
    "static/pyodide/comm-0.2.3-0a1b2c3d4e5f6-py3-none-any.whl": IMMUTABLE,
    "static/pyodide/pyodide.js": None,
    "static/pyodide/pyodide.mjs": None,
    "static/pyodide/pyodide.asm.wasm": None,
    "static/pyodide/python_stdlib.zip": None,
    "bootstrap.js": None,
}


@pytest.fixture
def site(tmp_path):
    root = tmp_path / "site"
    for name, (text, _content_type) in SITE_FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / "empty").mkdir()
    (tmp_path / "secret.txt").write_text(SECRET)
    os.symlink(tmp_path / "secret.txt", root / "link-to-secret.txt")
    return root


async def fetch(url, **kwargs):
    async with aiohttp.ClientSession() as session:
        async with session.get(url, allow_redirects=False, **kwargs) as response:
            return response.status, response.headers, await response.text()


async def raw_get(port, target):
    """Send the request target exactly as written and return status and response.

    aiohttp's client would normalize the dots and escapes that these tests need.
    """
    reader, writer = await asyncio.open_connection(LOCALHOST, port)
    request = f"GET {target} HTTP/1.1\r\nHost: {LOCALHOST}\r\nConnection: close\r\n"
    writer.write(request.encode() + b"\r\n")
    response = await reader.read()
    writer.close()
    status = int(response.split(b" ", 2)[1])
    return status, response.decode(errors="replace")


def test_static_content_types(site):
    async def scenario():
        async with running_relay(site_dir=site) as relay:
            return {name: await fetch(f"{relay.url}/{name}") for name in SITE_FILES}

    results = asyncio.run(scenario())
    for name, (text, content_type) in SITE_FILES.items():
        status, headers, body = results[name]
        assert status == 200, name
        assert headers["Content-Type"] == content_type, name
        assert body == text, name


def test_static_cache_control_by_name(site):
    async def scenario():
        async with running_relay(site_dir=site) as relay:
            first = {name: await fetch(f"{relay.url}/{name}") for name in SITE_FILES}
            _status, headers, _body = first["static/pyodide/pyodide-lock.json"]
            again = await fetch(
                f"{relay.url}/static/pyodide/pyodide-lock.json",
                headers={"If-None-Match": headers["ETag"]},
            )
            return first, again

    first, again = asyncio.run(scenario())
    for name, (_status, headers, _body) in first.items():
        expected = CACHE_CONTROL.get(name, "no-cache")
        assert headers.get("Cache-Control") == expected, name
    # A revalidated file that did not change costs no body.
    assert again[0] == 304


def test_static_root_serves_index_without_index_url(site):
    async def scenario():
        async with running_relay(site_dir=site) as relay:
            return await fetch(f"{relay.url}/")

    status, _headers, body = asyncio.run(scenario())
    assert status == 200
    assert body == "<html>root</html>"


def test_static_root_redirect_keeps_token(site):
    async def scenario():
        async with running_relay(
            site_dir=site, index_url="lab/index.html?path=bar.ipynb"
        ) as relay:
            return await fetch(f"{relay.url}/?token=abc")

    status, headers, _body = asyncio.run(scenario())
    assert status == 302
    assert headers["Location"] == "/lab/index.html?path=bar.ipynb&token=abc"


def test_static_directories(site):
    async def scenario():
        async with running_relay(site_dir=site) as relay:
            return (
                await fetch(f"{relay.url}/lab/"),
                await fetch(f"{relay.url}/lab?token=abc"),
                await fetch(f"{relay.url}/empty/"),
                await fetch(f"{relay.url}/static/pyodide/"),
                await fetch(f"{relay.url}/missing.js"),
            )

    lab, lab_no_slash, empty, no_index, missing = asyncio.run(scenario())
    assert lab[0] == 200
    assert lab[2] == "<html>lab</html>"
    assert lab_no_slash[0] == 301
    assert lab_no_slash[1]["Location"] == "/lab/?token=abc"
    # A directory without index.html is not listed.
    assert empty[0] == 404
    assert no_index[0] == 404
    assert "pyodide.mjs" not in no_index[2]
    assert missing[0] == 404


@pytest.mark.parametrize(
    "target",
    [
        "/../secret.txt",
        "/lab/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/lab/..%2f..%2fsecret.txt",
        "/%2e%2e%2fsecret.txt",
        "/link-to-secret.txt",
        "/..\\secret.txt",
    ],
)
def test_static_traversal_rejected(site, target):
    async def scenario():
        async with running_relay(site_dir=site) as relay:
            return await raw_get(relay.port, target)

    status, response = asyncio.run(scenario())
    assert status == 403
    assert SECRET not in response


def test_static_head_request(site):
    async def scenario():
        async with running_relay(site_dir=site) as relay:
            async with aiohttp.ClientSession() as session:
                async with session.head(f"{relay.url}/lab/index.html") as response:
                    return response.status, response.headers["Content-Type"]

    assert asyncio.run(scenario()) == (200, "text/html; charset=utf-8")


def test_static_without_site_is_404(tmp_path):
    async def scenario():
        async with running_relay() as relay:
            return await fetch(f"{relay.url}/index.html")

    status, _headers, _body = asyncio.run(scenario())
    assert status == 404


def test_static_site_must_be_directory(tmp_path):
    with pytest.raises(NotADirectoryError, match="not a directory"):
        asyncio.run(running_relay(site_dir=tmp_path / "missing").__aenter__())
