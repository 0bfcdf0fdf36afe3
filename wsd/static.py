"""The dashboard page and the JavaScript client, served over wsd's own HTTP port.

Why here and not behind nginx: the page must open a WebSocket to wsd, and serving it from
the same origin means no CORS, no Origin list to edit, and one process to deploy. The
files are small and read once at start, so a request costs no disk I/O on the event loop.

Every answer carries a Content-Security-Policy that allows scripts, styles and images from
this origin only (no inline script, no CDN) and WebSockets to this host alone. `'self'` in
`connect-src` does not cover `ws:` in every browser, so the ws/wss origin of the request's
own Host header is named explicitly.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from http import HTTPStatus
from importlib import resources
from typing import Iterable

from websockets.datastructures import Headers, MultipleValuesError
from websockets.http11 import Request, Response

__all__ = ["StaticFiles", "origin_allowed", "content_security_policy"]

# URL path → (file under wsd/web/, content type). Nothing else is served: no directory
# walking, so no path traversal to guard against.
ROUTES: dict[str, tuple[str, str]] = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/app.css": ("app.css", "text/css; charset=utf-8"),
    "/client/wsd-client.js": ("wsd-client.js", "text/javascript; charset=utf-8"),
    "/oidc.js": ("oidc.js", "text/javascript; charset=utf-8"),
    "/client/wsd-client.d.ts": ("wsd-client.d.ts", "text/plain; charset=utf-8"),
}

# A Host header as browsers send it: a name or IPv4/IPv6 address and an optional port.
# Anything else is left out of the CSP rather than pasted into a header.
HOST = re.compile(r"[A-Za-z0-9.\-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    content_type: str


class StaticFiles:
    """The files of ROUTES, loaded into memory once."""

    def __init__(self, ws_path: str = "/ws", timezone: str = "UTC",
                 sign_in_origins: Iterable[str] = ()) -> None:
        # The OpenID providers' origins: the page exchanges its code for tokens there.
        self._sign_in_origins = tuple(sign_in_origins)
        root = resources.files("wsd") / "web"
        self.files = {path: StaticFile(root.joinpath(name).read_bytes(), content_type)
                      for path, (name, content_type) in ROUTES.items()}
        # The page learns the endpoint's path (server.path) and the business time zone, in
        # which "today" is counted and meeting times are shown, from meta tags.
        page = self.files["/"]
        body = page.body.replace(b"__WSD_PATH__", html_attribute(ws_path))
        self.files["/"] = StaticFile(body.replace(b"__WSD_TIMEZONE__", html_attribute(timezone)),
                                     page.content_type)

    def serves(self, path: str) -> bool:
        return path in self.files

    def response(self, path: str, request: Request) -> Response:
        """The file at `path` (which `serves`) with its security headers."""
        file = self.files[path]
        headers = Headers()
        headers["Content-Type"] = file.content_type
        headers["Content-Length"] = str(len(file.body))
        # Revalidate every time: a new wsd version must not run against an old page.
        headers["Cache-Control"] = "no-cache"
        headers["Content-Security-Policy"] = content_security_policy(request_host(request),
                                                                     self._sign_in_origins)
        headers["X-Content-Type-Options"] = "nosniff"
        headers["Referrer-Policy"] = "no-referrer"
        headers["X-Frame-Options"] = "DENY"
        return Response(HTTPStatus.OK.value, HTTPStatus.OK.phrase, headers, file.body)


def html_attribute(text: str) -> bytes:
    return html.escape(text, quote=True).encode()


def request_host(request: Request) -> str | None:
    """The request's Host header when it looks like one, else None."""
    try:
        host = request.headers.get("Host")
    except MultipleValuesError:
        return None
    return host if host is not None and HOST.fullmatch(host) else None


def content_security_policy(host: str | None, sign_in_origins: Iterable[str] = ()) -> str:
    """Same-origin everything; WebSockets to this host only (and fetches to the configured
    OpenID providers' origins: the page's token requests); no inline script or style."""
    sockets = f" ws://{host} wss://{host}" if host else ""
    providers = "".join(f" {origin}" for origin in sign_in_origins)
    return ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            f"connect-src 'self'{sockets}{providers}; object-src 'none'; base-uri 'none'; "
            "form-action 'self'; frame-ancestors 'none'")


def origin_allowed(request: Request, allowed: Iterable[str]) -> bool:
    """Whether a handshake's Origin may open a WebSocket.

    Allowed: no Origin (CLI, services: they are not browsers, so no cross-site hijacking),
    an Origin in `server.allowed_origins` ("*" allows any), or the page's own origin,
    `http://` or `https://` plus the request's Host header — the dashboard served by this
    wsd, reached by whatever name, connects without editing config. A hostile page can only
    match its own Host (DNS rebinding), and it still needs a token: wsd has no cookies or
    other credentials a browser would attach by itself.
    """
    try:
        origin = request.headers.get("Origin")
    except MultipleValuesError:
        return False
    if origin is None:
        return True
    allowed = list(allowed)
    if "*" in allowed or origin in allowed:
        return True
    host = request_host(request)
    return host is not None and origin in (f"http://{host}", f"https://{host}")
