"""Bearer-token check for the admin API (everything but the health probes)."""

from __future__ import annotations

import hmac

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from api.problems import Problem, problem_response

__all__ = ["PUBLIC_PATHS", "auth_middleware"]

PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})
_CHALLENGE = 'Bearer realm="spacepanda"'


def auth_middleware(token: str) -> Middleware:
    """Middleware requiring ``Authorization: Bearer <token>`` outside :data:`PUBLIC_PATHS`.

    Applied before routing, so an unauthenticated client cannot even learn which paths exist.
    """
    if len(token) < 16:
        raise ValueError("API token too short")
    expected = token.encode()

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in PUBLIC_PATHS:
            return await handler(request)
        header = request.headers.get("Authorization", "")
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
