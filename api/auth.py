"""Bearer-token check for the admin API (everything but the health probes and the dashboard's
login), and the dashboard's session cookie.

The cookie is for the browser page only: it is HttpOnly and SameSite=Strict, it is accepted
for GET requests only (the page reads; it never changes anything, so a cross-site form cannot
use it either), and its value is derived from the token (an HMAC), so it changes when the token
is rotated and never is the token itself.
"""

from __future__ import annotations

import hashlib
import hmac

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from api.problems import Problem, problem_response

__all__ = [
    "DASHBOARD_PATHS",
    "PUBLIC_PATHS",
    "SESSION_COOKIE",
    "auth_middleware",
    "session_value",
]

PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})
# Served without the bearer token: they check the token or the cookie themselves.
DASHBOARD_PATHS = frozenset({"/", "/login", "/logout"})
SESSION_COOKIE = "spacepanda_session"
_CHALLENGE = 'Bearer realm="spacepanda"'
_SESSION_CONTEXT = b"spacepanda dashboard session v1"


def session_value(token: str) -> str:
    """The dashboard cookie's value for ``token``."""
    return hmac.new(token.encode(), _SESSION_CONTEXT, hashlib.sha256).hexdigest()


def has_session(request: web.Request, token: str) -> bool:
    given = request.cookies.get(SESSION_COOKIE, "")
    return bool(given) and hmac.compare_digest(given.encode(), session_value(token).encode())


def auth_middleware(token: str) -> Middleware:
    """Middleware requiring ``Authorization: Bearer <token>`` outside :data:`PUBLIC_PATHS`
    and :data:`DASHBOARD_PATHS`; a GET may instead carry the dashboard's session cookie.

    Applied before routing, so an unauthenticated client cannot even learn which paths exist.
    """
    if len(token) < 16:
        raise ValueError("API token too short")
    expected = token.encode()

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in PUBLIC_PATHS or request.path in DASHBOARD_PATHS:
            return await handler(request)
        header = request.headers.get("Authorization", "")
        if not header and request.method == "GET" and has_session(request, token):
            return await handler(request)
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            return problem_response(
                Problem(401, "Unauthorized", "missing bearer token (see D/api.token)"),
                headers={"WWW-Authenticate": _CHALLENGE},
            )
        # Constant time: the comparison must not reveal how much of a guess was right.
        if not hmac.compare_digest(given.strip().encode(), expected):
            return problem_response(
                Problem(401, "Unauthorized", "invalid bearer token"),
                headers={"WWW-Authenticate": _CHALLENGE + ', error="invalid_token"'},
            )
        return await handler(request)

    return check
