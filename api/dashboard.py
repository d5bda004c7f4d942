"""``GET /``: a live dashboard of one node, one page, no build step, nothing from a CDN.

The page (``api/dashboard/``: HTML, one script, one stylesheet, inlined into one response)
reads the same API as everyone else (``/v1/node``, ``/v1/peers``, ``/v1/dht``,
``/v1/channels``...) with the session cookie, and follows ``/v1/events`` with an
EventSource. Getting the cookie: ``/?token=<api.token>`` once (answered with a redirect to
``/`` so the token leaves the address bar and the history) or the login form (``POST
/login``). The cookie is HttpOnly and SameSite=Strict, and good for GET requests only (see
``api.auth``); the token itself is never stored by the browser, and the access log never sees
a query string.

A Content-Security-Policy allows exactly the inlined script and stylesheet (by hash) and
requests to this origin; the page sets no inline event handlers or style attributes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
from functools import cache
from importlib import resources
from urllib.parse import parse_qs

from aiohttp import web

from api.auth import SESSION_COOKIE, has_session, session_value
from api.parse import bad_request

__all__ = ["TOKEN_KEY", "routes"]

TOKEN_KEY = web.AppKey("dashboard_token", str)
_MAX_FORM = 1024
_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


def _asset(name: str) -> str:
    return resources.files("api").joinpath("dashboard", name).read_text("utf-8")


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


@cache
def _pages() -> tuple[str, str, str]:
    """(dashboard HTML, login HTML template, the CSP both are served with)."""
    script, style = _asset("dashboard.js"), _asset("dashboard.css")
    page = _asset("dashboard.html").replace("/*STYLE*/", style).replace("/*SCRIPT*/", script)
    login = _asset("login.html").replace("/*STYLE*/", style)
    csp = (
        "default-src 'none'; "
        f"script-src {_sha256(script)}; style-src {_sha256(style)}; "
        "connect-src 'self'; img-src 'self' data:; form-action 'self'; "
        "base-uri 'none'; frame-ancestors 'none'"
    )
    return page, login, csp


def _html(body: str, status: int = 200) -> web.Response:
    csp = _pages()[2]
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8",
                        headers={**_HEADERS, "Content-Security-Policy": csp})


def _login(error: str = "", status: int = 200) -> web.Response:
    text = _pages()[1].replace("<!--ERROR-->", html.escape(error))
    return _html(text, status)


def _signed_in(request: web.Request) -> web.HTTPSeeOther:
    """303 to ``/`` with the session cookie."""
    resp = web.HTTPSeeOther("/", headers=_HEADERS)
    resp.set_cookie(SESSION_COOKIE, session_value(request.app[TOKEN_KEY]), path="/",
                    httponly=True, samesite="Strict")
    return resp


def _token_ok(request: web.Request, given: str) -> bool:
    return hmac.compare_digest(given.strip().encode(), request.app[TOKEN_KEY].encode())


async def index(request: web.Request) -> web.Response:
    tokens = request.query.getall("token", [])
    if tokens:
        if len(tokens) == 1 and _token_ok(request, tokens[0]):
            raise _signed_in(request)
        return _login("That token is not this node's (D/api.token).", 401)
    if has_session(request, request.app[TOKEN_KEY]):
        return _html(_pages()[0])
    return _login()


async def login(request: web.Request) -> web.Response:
    if request.content_length is not None and request.content_length > _MAX_FORM:
        raise web.HTTPRequestEntityTooLarge(max_size=_MAX_FORM,
                                            actual_size=request.content_length)
    if request.content_type != "application/x-www-form-urlencoded":
        raise bad_request("send the login form (application/x-www-form-urlencoded)")
    raw = await request.content.read(_MAX_FORM + 1)
    if len(raw) > _MAX_FORM:
        raise web.HTTPRequestEntityTooLarge(max_size=_MAX_FORM, actual_size=len(raw))
    try:
        form = parse_qs(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise bad_request("the form is not UTF-8") from None
    given = form.get("token", [])
    if len(given) == 1 and _token_ok(request, given[0]):
        raise _signed_in(request)
    return _login("That token is not this node's (D/api.token).", 401)


async def logout(request: web.Request) -> web.Response:
    resp = web.HTTPSeeOther("/", headers=_HEADERS)
    resp.del_cookie(SESSION_COOKIE, path="/")
    raise resp


def routes(router: web.UrlDispatcher) -> None:
    router.add_get("/", index, allow_head=False)
    router.add_post("/login", login)
    router.add_post("/logout", logout)
