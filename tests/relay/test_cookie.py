"""The token cookie: set by pages opened with the token, accepted on WebSockets."""

from __future__ import annotations

import asyncio
import logging
from http.cookies import SimpleCookie
from pathlib import Path

import aiohttp

from asyncmachine.relay import Relay
from tests.relay.helpers import TOKEN, running_relay, ws_url
from tests.relay.test_access import echo_handler, try_upgrade

INDEX = "notebooks/index.html?path=bar.ipynb"


def make_site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    (site / "notebooks").mkdir(parents=True)
    (site / "notebooks" / "index.html").write_text("<p>notebook</p>")
    (site / "index.html").write_text("<p>home</p>")
    return site


async def fetch(url: str) -> tuple[int, dict[str, str], SimpleCookie]:
    """GET without following redirects; return status, headers and cookies set."""
    async with aiohttp.ClientSession() as session:
        async with session.get(url, allow_redirects=False) as response:
            await response.read()
            cookies = SimpleCookie()
            for header in response.headers.getall("Set-Cookie", []):
                cookies.load(header)
            return response.status, dict(response.headers), cookies


def run_fetches(tmp_path: Path, paths: list[str]) -> tuple[Relay, list]:
    async def scenario():
        async with running_relay(
            site_dir=make_site(tmp_path), index_url=INDEX
        ) as relay:
            return relay, [await fetch(relay.url + path) for path in paths]

    return asyncio.run(scenario())


def test_redirect_with_token_sets_cookie(tmp_path):
    relay, [(status, headers, cookies)] = run_fetches(tmp_path, [f"/?token={TOKEN}"])

    assert status == 302
    assert headers["Location"].startswith("/notebooks/index.html?path=bar.ipynb")
    assert f"token={TOKEN}" in headers["Location"]
    cookie = cookies[relay.token_cookie_name]
    assert cookie.value == TOKEN
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Strict"
    assert cookie["path"] == "/"


def test_page_with_token_sets_cookie(tmp_path):
    relay, [(status, _headers, cookies)] = run_fetches(
        tmp_path, [f"/notebooks/index.html?path=bar.ipynb&token={TOKEN}"]
    )

    assert status == 200
    assert cookies[relay.token_cookie_name].value == TOKEN


def test_page_without_valid_token_sets_no_cookie(tmp_path):
    _relay, results = run_fetches(
        tmp_path, ["/index.html", "/index.html?token=wrong", "/?token="]
    )

    for status, _headers, cookies in results:
        assert status in (200, 302)
        assert len(cookies) == 0


def test_cookie_name_carries_port():
    relay = Relay(port=12999, token=TOKEN)

    assert relay.token_cookie_name == "am_relay_token_12999"


def run_cookie_upgrades(cases):
    """Try each (query, cookie name or None for the relay's, cookie value)."""

    async def scenario():
        async with running_relay() as relay:
            relay.add_rpc_route("/echo", echo_handler)
            origin = f"http://127.0.0.1:{relay.port}"
            results = []
            for query, name, value in cases:
                cookie_name = name or relay.token_cookie_name
                headers = {"Cookie": f"{cookie_name}={value}"}
                url = ws_url(relay, "/echo", **query)
                results.append(await try_upgrade(url, origin=origin, headers=headers))
            return results

    return asyncio.run(scenario())


def test_upgrade_with_cookie_opens():
    [result] = run_cookie_upgrades([({}, None, TOKEN)])

    assert result == ("open", "ping")


def test_upgrade_with_wrong_cookie_rejected(caplog):
    caplog.set_level(logging.WARNING, logger="asyncmachine.relay")
    [result] = run_cookie_upgrades([({}, None, "wrong")])

    assert result[0] == 403
    assert "rejected with 403: token invalid" in caplog.text


def test_cookie_of_other_port_not_accepted(caplog):
    caplog.set_level(logging.WARNING, logger="asyncmachine.relay")
    [result] = run_cookie_upgrades([({}, "am_relay_token_1", TOKEN)])

    assert result[0] == 403
    assert "rejected with 403: token missing" in caplog.text


def test_query_token_wins_over_cookie(caplog):
    caplog.set_level(logging.WARNING, logger="asyncmachine.relay")
    [result] = run_cookie_upgrades([({"token": "wrong"}, None, TOKEN)])

    assert result[0] == 403
    assert "rejected with 403: token invalid" in caplog.text


def test_cookie_value_never_logged(caplog):
    caplog.set_level(logging.DEBUG)
    run_cookie_upgrades([({}, None, TOKEN), ({}, None, "wrong")])

    assert TOKEN not in caplog.text
