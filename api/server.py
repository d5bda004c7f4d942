"""aiohttp admin API: routes, error handling, and a start/stop helper bound to a multiaddr.

Thin adapter: every handler parses the request, calls one :class:`~api.control.NodeControl`
method, and serialises the result. Errors are raised, and turned into problem+json by one
middleware via ``api.problems`` (the only place statuses are chosen).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging

import structlog
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from api import channels, dashboard, events
from api.appkeys import CLOSING, CONTROL, KEEPALIVE, LIMITS, REGISTRY, RESOLVE_TIMEOUT_KEY, SPEC
from api.auth import auth_middleware
from api.control import NodeControl, PeerInfo
from api.limits import ApiLimits, ConnectionGuard
from api.openapi import build_spec
from api.parse import bad_request, only_query, peer_id_param, read_json
from api.problems import RECORD_NOT_FOUND, Problem, problem_for, problem_response
from node.core.errors import ConfigError
from node.core.identity import PeerId
from node.core.multiaddr import Multiaddr
from node.logs import register_secret

__all__ = ["MAX_BODY_BYTES", "RESOLVE_TIMEOUT", "AccessLog", "ApiServer", "create_app"]

# Request bodies: the largest valid one is a message (see api.channels); every other route
# takes at most this much (the largest valid {"addr": ...} is well under 1 KiB).
MAX_BODY_BYTES = 16 * 1024
# A lookup against many dead contacts can take rounds x timeouts; the API answers 504 well
# before the CLI's 60 s client timeout.
RESOLVE_TIMEOUT = 30.0
_log = structlog.get_logger("api")


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return problem_response(problem_for(exc), headers=headers)
    except Problem as exc:
        return problem_response(exc)
    except Exception as exc:
        problem = problem_for(exc)
        if problem.status >= 500 and problem.status not in (502, 503, 504):
            # Full details stay in the node log; the client gets an opaque problem.
            _log.exception("api.handler_failed", method=request.method, path=request.path)
        return problem_response(problem)


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def ready(request: web.Request) -> web.Response:
    readiness = request.app[CONTROL].readiness()
    if not readiness.ready:
        body = readiness.to_json()
        raise Problem(503, "Service Unavailable", readiness.reason,
                      extensions={"state": body["state"], "bootstrap": body["bootstrap"]})
    return web.json_response(readiness.to_json())


async def get_node(request: web.Request) -> web.Response:
    return web.json_response(request.app[CONTROL].node_info().to_json())


async def list_peers(request: web.Request) -> web.Response:
    peers = request.app[CONTROL].peer_list()
    return web.json_response({"peers": [p.to_json() for p in peers]})


def _find_peer(control: NodeControl, peer_id: PeerId) -> PeerInfo | None:
    text = str(peer_id)
    return next((p for p in control.peer_list() if p.peer_id == text), None)


async def get_peer(request: web.Request) -> web.Response:
    peer_id = peer_id_param(request)
    info = _find_peer(request.app[CONTROL], peer_id)
    if info is None:
        raise Problem(404, "Not Found", f"not connected to {peer_id}")
    return web.json_response(info.to_json())


async def connect_peer(request: web.Request) -> web.Response:
    body = await read_json(request, MAX_BODY_BYTES)
    if not isinstance(body, dict) or not isinstance(body.get("addr"), str):
        raise Problem(400, "Bad Request", 'body must be a JSON object {"addr": "<multiaddr>"}')
    extra = sorted(set(body) - {"addr"})
    if extra:
        raise Problem(400, "Bad Request", f"unknown field(s): {', '.join(extra)}")
    addr = Multiaddr.parse(body["addr"])  # MultiaddrError -> 400 with the parser's message
    control = request.app[CONTROL]
    before = {p.peer_id for p in control.peer_list()}
    info = await control.dial(addr)
    status = 200 if info.peer_id in before else 201
    headers = {"Location": f"/v1/peers/{info.peer_id}"} if status == 201 else None
    return web.json_response(info.to_json(), status=status, headers=headers)


def _query_bool(request: web.Request, name: str) -> bool:
    values = request.query.getall(name, [])
    if not values:
        return False
    if len(values) > 1 or values[0] not in ("true", "false"):
        raise bad_request(f"query parameter {name} must be true or false, given once")
    return values[0] == "true"


async def disconnect_peer(request: web.Request) -> web.Response:
    only_query(request, "block")
    block = _query_bool(request, "block")
    peer_id = peer_id_param(request)
    if not await request.app[CONTROL].disconnect(peer_id, block=block):
        raise Problem(404, "Not Found", f"not connected to {peer_id} and not in the address book")
    return web.Response(status=204)


async def list_blocks(request: web.Request) -> web.Response:
    blocks = await request.app[CONTROL].blocks()
    return web.json_response({"blocks": [b.to_json() for b in blocks]})


async def unblock_peer(request: web.Request) -> web.Response:
    peer_id = peer_id_param(request)
    if not await request.app[CONTROL].unblock(peer_id):
        raise Problem(404, "Not Found", f"{peer_id} is not blocked")
    return web.Response(status=204)


async def get_dht(request: web.Request) -> web.Response:
    return web.json_response(request.app[CONTROL].dht_statistics())


async def get_network(request: web.Request) -> web.Response:
    return web.json_response(await request.app[CONTROL].network())


async def resolve_peer(request: web.Request) -> web.Response:
    peer_id = peer_id_param(request)
    limit = request.app[RESOLVE_TIMEOUT_KEY]
    try:
        async with asyncio.timeout(limit):
            record = await request.app[CONTROL].resolve(peer_id)
    except TimeoutError:
        raise Problem(504, "Gateway Timeout", f"DHT lookup did not finish in {limit:g}s") from None
    if record is None:
        raise Problem(
            404, "Not Found", f"no valid peer record for {peer_id} in the DHT", RECORD_NOT_FOUND
        )
    return web.json_response(record)


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(request.app[SPEC])


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _closing(app: web.Application) -> None:
    app[CLOSING].set()  # event streams end before the server closes their connections


def create_app(
    control: NodeControl,
    token: str,
    registry: CollectorRegistry,
    *,
    resolve_timeout: float = RESOLVE_TIMEOUT,
    sse_keepalive: float = events.KEEPALIVE_S,
    limits: ApiLimits | None = None,
) -> web.Application:
    """The admin API application for one node (its own metrics registry, its own token)."""
    app = web.Application(
        middlewares=[_errors, auth_middleware(token)],
        client_max_size=channels.MAX_MESSAGE_BODY_BYTES,
    )
    app[CONTROL] = control
    app[REGISTRY] = registry
    app[SPEC] = build_spec()
    app[RESOLVE_TIMEOUT_KEY] = float(resolve_timeout)
    app[KEEPALIVE] = float(sse_keepalive)
    app[CLOSING] = asyncio.Event()
    app[dashboard.TOKEN_KEY] = token
    app[LIMITS] = limits or ApiLimits.for_this_process()
    app.on_shutdown.append(_closing)
    # The token never reaches a log line, traceback text included (node.logs).
    register_secret(token)
    # allow_head=False: serve exactly what openapi.json documents.
    r = app.router
    r.add_get("/healthz", health, allow_head=False)
    r.add_get("/readyz", ready, allow_head=False)
    r.add_get("/v1/node", get_node, allow_head=False)
    r.add_get("/v1/peers", list_peers, allow_head=False)
    r.add_post("/v1/peers", connect_peer)
    r.add_get("/v1/peers/{peer_id}", get_peer, allow_head=False)
    r.add_delete("/v1/peers/{peer_id}", disconnect_peer)
    r.add_get("/v1/blocks", list_blocks, allow_head=False)
    r.add_delete("/v1/blocks/{peer_id}", unblock_peer)
    r.add_get("/v1/dht", get_dht, allow_head=False)
    r.add_get("/v1/dht/peers/{peer_id}", resolve_peer, allow_head=False)
    r.add_get("/v1/network", get_network, allow_head=False)
    channels.routes(r)
    r.add_get("/v1/events", events.events, allow_head=False)
    r.add_get("/openapi.json", openapi, allow_head=False)
    r.add_get("/metrics", metrics, allow_head=False)
    dashboard.routes(r)
    return app


class AccessLog(AbstractAccessLogger):
    """One structured line per request (``api.access``): method, path, status, size,
    duration. The path only: a query string can carry a credential (the dashboard's
    ``?token=``) and never reaches the log; neither do headers."""

    _log = structlog.get_logger("api.access")

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self._log.info(
            "http_request",
            method=request.method,
            path=request.path,
            status=response.status,
            bytes=response.body_length,
            duration_ms=round(time * 1000, 3),
            remote=request.remote,
        )


class ApiServer:
    """Serve an app on a multiaddr; :meth:`start` returns the address actually bound.

    Port 0 picks a free port. The daemon writes the returned address to ``D/api``. Access
    logging is off unless ``access_log`` (then :class:`AccessLog`). The connection cap, header
    deadline and problem+json for aiohttp's own errors come from ``api.limits`` (the app's
    ``LIMITS``).
    """

    def __init__(
        self,
        app: web.Application,
        addr: Multiaddr,
        *,
        shutdown_timeout: float = 5.0,
        access_log: bool = False,
    ):
        if addr.peer_id is not None:
            raise ValueError("API bind address must not contain /p2p")
        self._app = app
        self._addr = addr
        self._shutdown_timeout = shutdown_timeout
        self._access_log = access_log
        self._runner: web.AppRunner | None = None
        self._server: asyncio.Server | None = None
        self.guard: ConnectionGuard | None = None
        self.address: Multiaddr | None = None

    @property
    def limits(self) -> ApiLimits:
        return self._app.get(LIMITS) or ApiLimits.for_this_process()

    async def start(self) -> Multiaddr:
        if self._runner is not None:
            raise RuntimeError("ApiServer already started")
        host, port = self._addr.host_port()
        if self._addr.is_ip and not ipaddress.ip_address(host).is_loopback:
            _log.warning("api.non_loopback_bind", addr=str(self._addr))
        limits = self.limits
        runner = web.AppRunner(
            self._app,
            handle_signals=False,
            shutdown_timeout=self._shutdown_timeout,
            access_log_class=AccessLog,
            access_log=logging.getLogger("api.access") if self._access_log else None,
            keepalive_timeout=limits.keepalive_timeout_s,
            lingering_time=limits.lingering_time_s,
            max_line_size=limits.max_line_size,
            max_field_size=limits.max_field_size,
            max_headers=limits.max_headers,
        )
        await runner.setup()
        assert runner.server is not None
        guard = ConnectionGuard(runner.server, limits)
        try:
            self._server = await asyncio.get_running_loop().create_server(
                guard, host, port, reuse_address=True, backlog=128
            )
        except OSError as exc:
            await runner.cleanup()
            raise ConfigError(
                f"cannot listen for the admin API on TCP {host}:{port}: {exc.strerror or exc}"
            ) from exc
        except BaseException:
            await runner.cleanup()
            raise
        self._runner, self.guard = runner, guard
        bound = self._server.sockets[0].getsockname()
        self.address = Multiaddr.from_host_port(str(bound[0]), int(bound[1]))
        _log.info("api.listening", addr=str(self.address),
                  max_connections=limits.max_connections)
        return self.address

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        if self.guard is not None:
            self.guard.log.flush()
        self.address = None
