"""The HTTP side of wsd's one port: a small route table from a handshake's path to its
answer — /healthz, /readyz, /metrics, the dashboard's static files — and, for the WebSocket
path, admission's checks before the upgrade.

A plain GET of the WebSocket path (no Upgrade header) gets the static page when one is
served there; anything else unknown is 404.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Awaitable, Callable
from urllib.parse import urlsplit

import orjson
from websockets.http11 import Request, Response

from wsd.admission import Admission
from wsd.metrics_export import DaemonMetrics
from wsd.static import StaticFiles
from wsd.transport import Handshake

__all__ = ["HttpRoutes", "Readiness", "always_ready"]

# What /readyz answers: (ready, the reason in its body).
Readiness = Callable[[], tuple[bool, str]]
Route = Callable[[Handshake, Request], Awaitable[Response]]


def always_ready() -> tuple[bool, str]:
    """The readiness of a server run without a change listener (tests, tools)."""
    return True, "ready"


class HttpRoutes:
    """Answers every HTTP request a transport hands over; None lets a WebSocket upgrade on."""

    def __init__(self, ws_path: str, static: StaticFiles, metrics: DaemonMetrics,
                 admission: Admission, readiness: Readiness) -> None:
        self._ws_path = ws_path
        self._static = static
        self._admission = admission
        self._readiness = readiness
        self._table: dict[str, Route] = {"/healthz": self._healthz, "/readyz": self._readyz,
                                         "/metrics": metrics.respond, "/oidc.json": self._oidc}

    async def process_request(self, connection: Handshake, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        route = self._table.get(path)
        if route is not None:
            return await route(connection, request)
        if path != self._ws_path or "Upgrade" not in request.headers:
            if self._static.serves(path):
                return self._static.response(path, request)
        if path != self._ws_path:
            return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
        return self._admission.check(connection, request)

    async def _healthz(self, connection: Handshake, _request: Request) -> Response:
        return connection.respond(HTTPStatus.OK, "ok\n")

    async def _oidc(self, connection: Handshake, _request: Request) -> Response:
        """The page's sign-in settings (`OidcVerifier.page_config`): public, as the page is."""
        body = orjson.dumps(await self._admission.oidc.page_config()).decode()
        response = connection.respond(HTTPStatus.OK, body)
        del response.headers["Content-Type"]
        response.headers["Content-Type"] = "application/json"
        response.headers["Cache-Control"] = "no-cache"
        return response

    async def _readyz(self, connection: Handshake, _request: Request) -> Response:
        ready, reason = self._readiness()
        return connection.respond(HTTPStatus.OK if ready else HTTPStatus.SERVICE_UNAVAILABLE,
                                  reason + "\n")
