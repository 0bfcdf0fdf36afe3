"""Who may connect and who a connection is: the handshake's checks (origin, failed-login
throttle, connection and per-token limits, the Bearer token), the `auth.login` action (an
API token, or a person's OpenID token: `sign_in`), `auth.refresh`, and the bound on
messages before login.

Every refusal is logged through one `QuietLog` (a flood logs a count, not a line each) and
counted in /metrics by reason (`wsd.metrics_export.REFUSAL_REASONS`).
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import structlog
from websockets.http11 import Request, Response

import datetime as dt

from wsd.auth import TokenBook, bearer_token
from wsd.client_address import ClientAddresses
from wsd.config import Config
from wsd.actions import Caller
from wsd.errors import RateLimited, Unauthorized, Unavailable
from wsd.oidc import OidcVerifier, TokenRefused
from wsd.oidc_keys import KeysUnavailable, ProviderKeys
from wsd.guards import FailureThrottle, QuietLog
from wsd.metrics_export import DaemonMetrics
from wsd.protocol import Request as WsdRequest
from wsd.sessions import Session, Sessions
from wsd.static import origin_allowed
from wsd.transport import Connection, Handshake

__all__ = ["Admission", "MAX_FAILED_LOGINS"]

log = structlog.get_logger("wsd.admission")

MAX_FAILED_LOGINS = 5


class Admission:
    """The handshake's and the login's checks, against the limits of `server.*` and `auth.*`."""

    def __init__(self, config: Config, sessions: Sessions, metrics: DaemonMetrics) -> None:
        self.config = config
        self.tokens = TokenBook(config.auth.tokens)   # a reload (SIGHUP) replaces it
        self.refusals = QuietLog(log)
        self._sessions = sessions
        self._metrics = metrics
        self._handshakes = 0   # TCP connections accepted whose HTTP handshake has not ended
        self._failures = FailureThrottle(config.auth.max_failures_per_minute)
        self._addresses = ClientAddresses(config.server.trusted_proxies)
        self.provider_keys = ProviderKeys(config.oidc)
        self.oidc = OidcVerifier(config.oidc, self.provider_keys)

    # -- the TCP accept --------------------------------------------------------------------------

    def handshake_started(self, peer: Any) -> bool:
        """A TCP connection was accepted: it counts against `server.max_handshakes` until
        `handshake_ended`. False past the bound: the transport closes it at once, so partial
        requests cannot hold sockets and memory beyond it (each is also cut off after
        `server.open_timeout_seconds`)."""
        if self._handshakes >= self.config.server.max_handshakes:
            # No request read yet, so no X-Forwarded-For: the peer's own address.
            self.refusals.warning("handshake refused", reason="max_handshakes",
                                  address=self._addresses.of(peer, ()))
            self._metrics.refused("max_handshakes")
            return False
        self._handshakes += 1
        return True

    def handshake_ended(self) -> None:
        self._handshakes -= 1

    # -- the WebSocket handshake -----------------------------------------------------------------

    def check(self, connection: Handshake, request: Request) -> Response | None:
        """A refusal for an upgrade request to the WebSocket path, or None to accept it."""
        settings = self.config.server
        address = self.client_address(connection, request)
        if not origin_allowed(request, settings.allowed_origins):
            return self._refuse(connection, HTTPStatus.FORBIDDEN, "origin not allowed", address,
                                "origin")
        if self._failures.blocked(address):
            return self._refuse(connection, HTTPStatus.TOO_MANY_REQUESTS, "too many failed logins",
                                address, "auth_throttled")
        if len(self._sessions) >= settings.max_connections:
            return self._refuse(connection, HTTPStatus.SERVICE_UNAVAILABLE, "too many connections",
                                address, "max_connections")
        if request.headers.get("Authorization") is None:
            if self._sessions.unauthenticated >= settings.max_unauthenticated:
                return self._refuse(connection, HTTPStatus.SERVICE_UNAVAILABLE,
                                    "too many connections waiting to log in", address,
                                    "max_unauthenticated")
            return None
        caller = self.caller_of(request)
        if caller is None:
            self._failures.failed(address)
            response = self._refuse(connection, HTTPStatus.UNAUTHORIZED, "invalid token", address,
                                    "invalid_token")
            response.headers["WWW-Authenticate"] = 'Bearer realm="wsd"'
            return response
        if self._sessions.connections_of(caller.name) >= settings.max_connections_per_token:
            return self._refuse(connection, HTTPStatus.TOO_MANY_REQUESTS,
                                "too many connections for this token", address,
                                "max_connections_per_token")
        return None

    def caller_of(self, request: Request | None) -> Caller | None:
        """The caller a handshake's Bearer header names. Read again from the request kept on
        the connection, so nothing outlives a handshake that does not complete."""
        token = bearer_token(request.headers.get("Authorization")) if request is not None else None
        return self.tokens.authenticate(token) if token else None

    def client_address(self, connection: Connection | Handshake, request: Request | None) -> str:
        """Who the throttle and the logs see: the peer, or behind a trusted proxy the client
        its X-Forwarded-For names."""
        forwarded = request.headers.get_all("X-Forwarded-For") if request is not None else []
        return self._addresses.of(connection.remote_address, forwarded)

    def _refuse(self, connection: Handshake, status: HTTPStatus, text: str, address: str,
                reason: str) -> Response:
        self.refusals.warning("handshake refused", reason=reason, address=address)
        self._metrics.refused(reason)
        return connection.respond(status, text + "\n")

    # -- on the open connection ------------------------------------------------------------------

    def login(self, session: Session, request: WsdRequest) -> dict[str, Any]:
        """`auth.login` with an API token: the session's caller becomes the token's (raises on
        a bad token)."""
        self._check_throttle(session)
        token = request.payload.get("token")
        caller = self.tokens.authenticate(token) if isinstance(token, str) else None
        if caller is None:
            self._failed(session, "invalid_token")
            raise Unauthorized("invalid token")
        return self._logged_in(session, caller)

    async def sign_in(self, session: Session, request: WsdRequest) -> dict[str, Any]:
        """`auth.login` with `id_token`: the session's caller becomes the person the provider's
        token names (raises `unauthorized` with `details.reason` on a refused token)."""
        caller = await self._verified(session, request)
        log.info("signed in", caller=caller.name, role=caller.role, address=session.address,
                 expires_at=self._expiry(caller))
        return self._logged_in(session, caller)

    async def refresh(self, session: Session, request: WsdRequest) -> dict[str, Any]:
        """`auth.refresh`: a fresh token of the same person (and role) moves the connection's
        expiry on; its subscriptions and requests in flight are untouched."""
        current = session.caller
        if current is None or current.person is None:
            raise Unauthorized("auth.refresh is for a connection signed in with id_token",
                               {"reason": "not_signed_in"})
        caller = await self._verified(session, request)
        if caller.name != current.name or caller.role != current.role:
            reason = "other_subject" if caller.name != current.name else "role_changed"
            self._failed(session, reason, caller=current.name)
            raise Unauthorized("a refresh must be the same person with the same role; sign in "
                               "again on a new connection", {"reason": reason})
        self._sessions.log_in(session, caller)
        log.info("token refreshed", caller=caller.name, expires_at=self._expiry(caller))
        return self.login_reply(caller)

    async def _verified(self, session: Session, request: WsdRequest) -> Caller:
        """The caller of the request's `id_token`; every refusal logged with its reason and
        counted as a failed login. The token itself is never logged."""
        self._check_throttle(session)
        token = request.payload.get("id_token")
        if not self.oidc.enabled:
            raise Unauthorized("sign-in with OpenID Connect is not configured ([oidc] providers)",
                               {"reason": "oidc_disabled"})
        if not isinstance(token, str) or not token:
            raise Unauthorized("id_token: a JWT from a configured provider", {"reason": "malformed"})
        try:
            return await self.oidc.verify(token)
        except TokenRefused as refusal:
            self._failed(session, refusal.reason)
            raise Unauthorized(str(refusal), {"reason": refusal.reason}) from None
        except KeysUnavailable:
            log.warning("sign-in unavailable", reason="oidc_keys_unavailable", address=session.address)
            raise Unavailable("the sign-in provider's keys could not be fetched; try again",
                              {"reason": "oidc_keys_unavailable"}) from None

    def _check_throttle(self, session: Session) -> None:
        if self._failures.blocked(session.address):
            self.refusals.warning("login refused", reason="auth_throttled", address=session.address)
            raise RateLimited("too many failed logins from this address; try again in a minute",
                              {"retry_after_seconds": 60})

    def _failed(self, session: Session, reason: str, **fields: Any) -> None:
        session.failed_logins += 1
        self._failures.failed(session.address)
        self.refusals.warning("login failed", reason=reason, address=session.address, **fields)

    def _logged_in(self, session: Session, caller: Caller) -> dict[str, Any]:
        limit = self.config.server.max_connections_per_token
        if session.caller is None and self._sessions.connections_of(caller.name) >= limit:
            self.refusals.warning("login refused", reason="max_connections_per_token",
                                  address=session.address)
            raise RateLimited("too many connections for this token", {"limit": limit})
        self._sessions.log_in(session, caller)
        return self.login_reply(caller)

    @staticmethod
    def _expiry(caller: Caller) -> str | None:
        person = caller.person
        return dt.datetime.fromtimestamp(person.expires_at, dt.timezone.utc).isoformat() if person else None

    @staticmethod
    def login_reply(caller: Caller) -> dict[str, Any]:
        """`{name, role}`; for a person also `person` {provider, subject, name, email} and
        `expires_at` (ISO 8601, the token's exp)."""
        person = caller.person
        if person is None:
            return {"name": caller.name, "role": caller.role}
        return {"name": caller.name, "role": caller.role, "expires_at": Admission._expiry(caller),
                "person": {"provider": person.provider, "subject": person.subject,
                           "name": person.name, "email": person.email}}

    def close_reason(self, session: Session) -> str | None:
        """After a refused request: why the connection must close with 1008, if it must."""
        if session.failed_logins >= MAX_FAILED_LOGINS:
            return "too many failed logins"
        if self._failures.blocked(session.address) and session.caller is None:
            return "too many failed logins from this address"
        return self.count_before_login(session)

    def count_before_login(self, session: Session) -> str | None:
        if session.caller is not None:
            return None
        session.messages_before_login += 1
        if session.messages_before_login >= self.config.server.max_messages_before_login:
            self.refusals.warning("connection closed before login", reason="messages_before_login",
                                  address=session.address)
            return "too many messages before login"
        return None
