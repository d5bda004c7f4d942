"""``GET /``: the dashboard's login (form or ``?token=``, exchanged for an HttpOnly cookie that
is good for GET requests only and never logged), its page and its security headers; and the
page itself in headless Chromium against a running mesh (skipped without a browser).

The browser test saves a screenshot when ``SPACEPANDA_DASHBOARD_SCREENSHOT`` names a file
(how docs/dashboard.png was made).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import os
import re
import shutil
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import ClientSession, CookieJar
from prometheus_client import CollectorRegistry

from api.auth import SESSION_COOKIE, session_value
from api.server import ApiServer, create_app
from node.core.multiaddr import Multiaddr
from node.logs import configure_logging
from node.metrics import node_registry
from tests.api.channel_harness import AUTH as HARNESS_AUTH
from tests.api.channel_harness import Api, api_clients, eventually, mesh
from tests.api.conftest import TOKEN, Client, FakeNode
from tests.harness import Running, StartNode, wait_for

LOGIN_MARK = 'action="/login"'


def _inline(html: str, tag: str) -> str:
    match = re.search(rf"<{tag}>(.*?)</{tag}>", html, re.S)
    assert match is not None, tag
    return match.group(1)


def _sha(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


async def test_login_form_without_a_session(client: Client) -> None:
    resp = await client.get("/")
    assert resp.status == 200 and resp.content_type == "text/html"
    page = await resp.text()
    assert LOGIN_MARK in page and 'name="token"' in page
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    assert resp.headers["X-Frame-Options"] == "DENY"
    csp = resp.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert _sha(_inline(page, "style")) in csp
    assert "<script" not in page  # the login form runs no script at all


async def test_token_in_the_query_becomes_a_cookie_and_leaves_the_url(client: Client) -> None:
    resp = await client.get(f"/?token={TOKEN}", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/"
    cookie = resp.headers["Set-Cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}={session_value(TOKEN)};")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert TOKEN not in cookie  # derived, never the token itself
    # The page, with its script and style allowed by hash (and nothing else).
    resp = await client.get("/")
    page = await resp.text()
    assert resp.status == 200 and 'id="mesh"' in page and LOGIN_MARK not in page
    csp = resp.headers["Content-Security-Policy"]
    assert _sha(_inline(page, "script")) in csp and _sha(_inline(page, "style")) in csp
    assert "unsafe-inline" not in csp and "connect-src 'self'" in csp
    assert "http" not in re.sub(r"http://www\.w3\.org/2000/svg", "", page)  # no CDN, no URLs


async def test_the_cookie_reads_but_never_writes(client: Client, fake: FakeNode) -> None:
    await client.get(f"/?token={TOKEN}")  # the jar keeps the cookie
    assert (await client.get("/v1/node")).status == 200
    assert (await client.get("/v1/peers")).status == 200
    assert (await client.get("/metrics")).status == 200
    for method, path, body in (("POST", "/v1/peers", {"addr": "/ip4/127.0.0.1/tcp/1"}),
                               ("DELETE", f"/v1/peers/{fake.identity.peer_id}", None),
                               ("PUT", "/v1/profile", {"display_name": "x"})):
        resp = await client.request(method, path, json=body)
        assert resp.status == 401, (method, path)
    assert fake.dialled == []
    # A forged or stale cookie is nothing.
    client.session.cookie_jar.clear()
    client.session.cookie_jar.update_cookies({SESSION_COOKIE: session_value("another token!!!")})
    assert (await client.get("/v1/node")).status == 401


async def test_login_form_post_wrong_token_and_logout(client: Client) -> None:
    resp = await client.post("/login", data={"token": "nope"}, allow_redirects=False)
    assert resp.status == 401 and "not this node" in await resp.text()
    assert (await client.get(f"/?token={TOKEN}x", allow_redirects=False)).status == 401
    assert (await client.get("/v1/node")).status == 401
    resp = await client.post("/login", data={"token": TOKEN}, allow_redirects=False)
    assert resp.status == 303 and SESSION_COOKIE in resp.headers["Set-Cookie"]
    assert (await client.get("/v1/node")).status == 200
    resp = await client.post("/logout", allow_redirects=False)
    assert resp.status == 303
    assert (await client.get("/v1/node")).status == 401
    # Not a form, or too big: a problem, not a page.
    resp = await client.post("/login", json={"token": TOKEN})
    assert resp.status == 400
    resp = await client.post("/login", data={"token": "x" * 4000})
    assert resp.status == 413


async def test_the_token_in_the_query_is_never_logged() -> None:
    stream = io.StringIO()
    configure_logging("json", "debug", stream=stream)
    server = ApiServer(create_app(FakeNode(), TOKEN, CollectorRegistry()),
                       Multiaddr.parse("/ip4/127.0.0.1/tcp/0", allow_port_zero=True),
                       access_log=True)
    addr = await server.start()
    try:
        async with ClientSession(cookie_jar=CookieJar(unsafe=True)) as s:
            base = f"http://127.0.0.1:{addr.port}"
            async with s.get(f"{base}/?token={TOKEN}") as resp:
                assert resp.status == 200 and 'id="mesh"' in await resp.text()
            async with s.get(f"{base}/?token=wrong-{TOKEN}") as resp:
                assert resp.status == 401
            async with s.post(f"{base}/login", data={"token": TOKEN}) as resp:
                assert resp.status == 200
    finally:
        await server.stop()
        configure_logging("console", "info")
    text = stream.getvalue()
    assert TOKEN not in text and session_value(TOKEN) not in text
    paths = [json.loads(line)["path"] for line in text.splitlines()
             if json.loads(line)["event"] == "http_request"]
    assert paths == ["/", "/", "/", "/login", "/"]


# ---- the page in a real browser ---------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


def _driver() -> Any:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium not installed (pip install selenium)")
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("no headless browser: apt-get install chromium chromium-driver")
    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1440,1180", "--force-device-scale-factor=1",
                "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


class Page:
    """The browser, driven off the event loop (the nodes and their APIs run on it)."""

    def __init__(self, driver: Any) -> None:
        self.d = driver

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    async def js(self, script: str, *args: Any) -> Any:
        return await self.run(self.d.execute_script, script, *args)

    async def until(self, script: str, *args: Any, timeout: float = 20.0) -> Any:
        """Poll a JS expression (``return ...``) until it is truthy; its value."""
        async with asyncio.timeout(timeout):
            while True:
                value = await self.js(script, *args)
                if value:
                    return value
                await asyncio.sleep(0.1)


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    driver = _driver()
    try:
        yield Page(driver)
    finally:
        await asyncio.to_thread(driver.quit)


async def _named(api: Api, name: str) -> None:
    resp = await api.c.put("/v1/profile", json={"display_name": name}, headers=HARNESS_AUTH)
    assert resp.status == 200, await resp.text()


async def test_dashboard_in_headless_chromium(start_node: StartNode, page: Page) -> None:
    nodes = await mesh(start_node, 4, auto_accept_invites=True, keepalive_interval_s=1.0,
                       idle_timeout_s=10.0)
    a, b, c, _d = nodes  # dave meshes but stays out of the channel
    await wait_for(lambda: all(len(n.peers()) == 3 for n in nodes), timeout=30)
    clients = api_clients()
    make = await clients.__anext__()
    server = ApiServer(create_app(a.node, TOKEN, node_registry(a.node)),
                       Multiaddr.parse("/ip4/127.0.0.1/tcp/0", allow_port_zero=True))
    addr = await server.start()
    base = f"http://127.0.0.1:{addr.port}"
    try:
        apis = [Api(await make(n)) for n in nodes]
        for api, name in zip(apis, ("alice", "bob", "carol", "dave"), strict=True):
            await _named(api, name)
        cid = await apis[0].create("general")
        for n in (b, c):
            await apis[0].invite(cid, n.node.peer_id)

        async def everyone_in() -> bool:
            return all([await api.has_channel(cid) for api in apis[:3]]) and \
                await apis[0].member_count(cid) == 3

        await eventually(everyone_in, timeout=30)
        for api, text in zip(apis[:3], ("hello from alice", "bob here: the mesh is up",
                                    "carol says hi"), strict=True):
            await api.send(cid, text)

        async def all_read() -> bool:
            body = await apis[0].messages(cid)
            return len(body["messages"]) == 3

        await eventually(all_read, timeout=30)
        await _check_page(page, base, nodes, cid, apis)
    finally:
        await server.stop()
        await clients.aclose()


def _ids(nodes: list[Running]) -> list[str]:
    return [str(n.node.peer_id) for n in nodes]


async def _check_page(page: Page, base: str, nodes: list[Running], cid: str,
                      apis: list[Api]) -> None:
    a_id, b_id, c_id, d_id = _ids(nodes)
    await page.run(page.d.get, f"{base}/?token={TOKEN}")
    # The token left the address bar; the cookie is HttpOnly (the page's script cannot see it).
    assert await page.run(lambda: page.d.current_url) == f"{base}/"
    cookie = await page.run(page.d.get_cookie, SESSION_COOKIE)
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
    assert await page.js("return document.cookie") == ""

    assert await page.until(
        "const e = document.getElementById('node-id'); return e && e.textContent") == a_id
    # Peers with their RTT, measured by keepalives.
    await page.until("""
        const rows = [...document.querySelectorAll('#peers tbody tr[data-peer]')];
        return rows.length === 3 && rows.every(r => /ms$/.test(r.querySelector('.rtt')
            .textContent));""")
    rows = await page.js("return [...document.querySelectorAll('#peers tbody tr')]"
                         ".map(r => r.dataset.peer)")
    assert sorted(rows) == sorted([b_id, c_id, d_id])
    # The mesh graph: this node and its three peers, all linked.
    graph = await page.js("""return [...document.querySelectorAll('#mesh circle')]
        .map(c => [c.dataset.peer, c.getAttribute('class')])""")
    assert sorted(graph) == sorted([[a_id, "self"], [b_id, "connected"], [c_id, "connected"],
                                    [d_id, "connected"]])
    assert await page.js("return document.querySelectorAll('#mesh line.connected').length") == 3
    names = await page.js("return [...document.querySelectorAll('#mesh text.name')]"
                          ".map(t => t.textContent)")
    assert sorted(names) == ["alice", "bob", "carol", sorted(names)[3]]  # dave: no channel
    assert await page.until(
        "return document.getElementById('dht-ready').textContent === 'yes'")
    assert await page.until(
        "return document.getElementById('live').textContent === 'events: live'")
    # The channel: its members by name, the latest messages.
    sel = f"article[data-channel='{cid}']"
    await page.until(f"return document.querySelectorAll(\"{sel} .messages li[data-message]\")"
                     ".length === 3")
    members = await page.js(f"return [...document.querySelectorAll(\"{sel} .members li\")]"
                            ".map(li => li.textContent)")
    assert sorted(m.rstrip(" ★") for m in members) == ["alice", "bob", "carol"]
    texts = await page.js(f"return [...document.querySelectorAll(\"{sel} .messages .text\")]"
                          ".map(e => e.textContent)")
    assert sorted(texts) == sorted(["hello from alice", "bob here: the mesh is up",
                                    "carol says hi"])
    # Live: new messages arrive through /v1/events, without a reload (the page reads a
    # channel's messages once; after that only events add to them). Text stays text.
    await page.js("window.__same_page = true")

    async def arrives(text: str) -> None:
        await page.until(f"return [...document.querySelectorAll(\"{sel} .messages .text\")]"
                         ".some(e => e.textContent === arguments[0])", text)

    await apis[1].send(cid, "and this one arrived live, through /v1/events")
    await arrives("and this one arrived live, through /v1/events")
    shot = os.environ.get("SPACEPANDA_DASHBOARD_SCREENSHOT")
    if shot:
        await asyncio.sleep(2.5)  # one more poll: RTTs and uptime settle
        await page.run(page.d.save_screenshot, shot)
    await apis[2].send(cid, "live: <b>not bold</b>")
    await arrives("live: <b>not bold</b>")
    assert await page.js("return window.__same_page === true")
    assert await page.js(f"return document.querySelectorAll(\"{sel} .messages b\").length") == 0
    # No script or style was refused by the Content-Security-Policy.
    logs = await page.run(page.d.get_log, "browser")
    assert not [e for e in logs if "Content Security Policy" in e["message"]], logs

    # Log out, then the login form: a wrong token, then the right one.
    await page.js("document.querySelector('form[action=\"/logout\"]').submit()")
    await page.until("return !!document.querySelector('form[action=\"/login\"]')")
    assert await page.run(page.d.get_cookie, SESSION_COOKIE) is None
    await page.js("document.getElementById('token').value = arguments[0];"
                  "document.querySelector('form').submit()", "wrong-token-0123456789")
    await page.until("return (document.getElementById('error') || {}).textContent"
                     " && document.getElementById('error').textContent.includes('not this')")
    await page.js("document.getElementById('token').value = arguments[0];"
                  "document.querySelector('form').submit()", TOKEN)
    assert await page.until(
        "const e = document.getElementById('node-id'); return e && e.textContent") == a_id


def test_the_page_ships_in_the_wheel() -> None:
    """Every file of the page is package data (the image installs the wheel, not the repo)."""
    import fnmatch
    import tomllib
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    config = tomllib.loads((repo / "pyproject.toml").read_text())
    globs = config["tool"]["setuptools"]["package-data"]["api"]
    files = sorted(p.relative_to(repo / "api").as_posix()
                   for p in (repo / "api" / "dashboard").iterdir())
    assert files == ["dashboard/dashboard.css", "dashboard/dashboard.html",
                     "dashboard/dashboard.js", "dashboard/login.html"]
    for f in files:
        assert any(fnmatch.fnmatch(f, g) for g in globs), f
