"""The connected clients: each one's `Session` (who it is, what it has in flight, its bounded
sending) and `Sessions`, the registry that counts them per token, publishes events to them
and drops those that stop reading.

Nothing here awaits a client's socket: every message is written without waiting
(`Session.push`), events are dropped for a client whose unread bytes exceed
`server.max_send_buffer_bytes`, its next request is not read until it catches up
(`Session.caught_up`, awaited by the transport), and `Sessions.sweep` disconnects a client
that stays past the limit for `server.send_timeout_seconds`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Coroutine

import structlog

from wsd.config import ServerConfig
from wsd.actions import Caller, Context
from wsd.live import HINT_TOPIC
from wsd.live_reruns import LiveQuery
from wsd.protocol import event_message
from wsd.transport import CAUGHT_UP_POLL, CloseCode, Connection

__all__ = ["Session", "Sessions", "TOKEN_EXPIRED"]

log = structlog.get_logger("wsd.sessions")

# The close code of a connection whose person's token expired without `auth.refresh`
# (4000-4999: private use, RFC 6455 §7.4.2; 4401 as HTTP's 401. Not 4001: wsd-client.js
# closes with 4001 itself to retry a rate-limited login later).
TOKEN_EXPIRED = 4401


@dataclass(eq=False)
class Session:
    """One client connection: who it is, what it has in flight, how far behind it reads."""

    connection: Connection   # wsd.transport: websockets' or picows's, behind one interface
    address: str
    send_limit: int
    caller: Caller | None = None
    deadline: float = 0.0   # event loop time by which it must log in (`login_deadline`)
    inflight: set[asyncio.Task[None]] = field(default_factory=set)
    failed_logins: int = 0
    messages_before_login: int = 0
    behind_since: float | None = None   # when it first fell behind the send limit
    events_dropped: int = 0
    subscriptions: dict[str, LiveQuery] = field(default_factory=dict)
    # Live updates held back while the client is behind: the newest per subscription only.
    held_updates: dict[str, bytes] = field(default_factory=dict)
    closed: bool = False   # its connection ended (a live subscribe still running must not register)
    context: Context | None = None   # what its requests' handlers get, built once per caller
    wants_hints: bool = False   # `changes` events only after live.hints (opt-in)
    # Its token was removed or changed by a reload, or a person's token expired: nothing it
    # sends from then on runs.
    revoked: bool = False
    noticed_expiry: float = 0.0   # the person's exp that `auth.expiring` was sent for

    # -- what its transport reads (wsd.transport.Peer) -----------------------------------------

    @property
    def login_deadline(self) -> float | None:
        return self.deadline if self.caller is None else None

    def is_behind(self) -> bool:
        return self.caller is not None and self.unread_bytes() > self.send_limit

    async def caught_up(self) -> None:
        """Read nothing more from a client that is not reading its replies (TCP pushes back
        on it); the sweep disconnects it if this lasts past the send timeout."""
        while self.unread_bytes() > self.send_limit and self.connection.is_open():
            await asyncio.sleep(CAUGHT_UP_POLL)

    # -- sending -------------------------------------------------------------------------------

    def unread_bytes(self) -> int:
        """Bytes written for this client that its socket has not taken yet."""
        return self.connection.unread_bytes()

    def push(self, message: bytes) -> None:
        """Write one encoded message without waiting (a Text frame: browsers parse text),
        in the order of the calls. A closed or closing connection takes nothing, which is
        not an error."""
        self.connection.write_text(message)

    def has_room(self, frame: bytes) -> bool:
        """Whether `frame` may be written now: the limit bounds what waits unread, not one
        frame, so an empty buffer takes the next frame whatever its size (a live update of a
        1,000-lead page is ~590 KB, over the default 256 KiB)."""
        unread = self.unread_bytes()
        return unread == 0 or unread + len(frame) <= self.send_limit

    def push_event(self, message: bytes) -> bool:
        """Push an event unless the client is too far behind; False when it was dropped."""
        if not self.has_room(message):
            self.events_dropped += 1
            self._fell_behind()
            return False
        self.push(message)
        return True

    def push_update(self, subscription: str, frame: bytes) -> None:
        """Push a live update; a client that is behind keeps only the newest per subscription,
        sent when it catches up (`release_held_updates`)."""
        if self.held_updates or not self.has_room(frame):
            self.held_updates.pop(subscription, None)
            self.held_updates[subscription] = frame
            self._fell_behind()
            return
        self.push(frame)

    def release_held_updates(self) -> None:
        while self.held_updates:
            subscription, frame = next(iter(self.held_updates.items()))
            if not self.has_room(frame):
                return
            del self.held_updates[subscription]
            self.push(frame)

    def _fell_behind(self) -> None:
        if self.behind_since is None:
            self.behind_since = time.monotonic()


class Sessions:
    """Every open session, counted per token and before login (the admission limits)."""

    def __init__(self, settings: ServerConfig) -> None:
        # A reload (SIGHUP) walks this set to close the sessions of revoked tokens.
        self.all: set[Session] = set()
        self.slow_clients_dropped = 0
        self._settings = settings
        self._per_token: Counter[str] = Counter()
        self._unauthenticated = 0
        self._closing: set[asyncio.Task[None]] = set()   # closes of expired sessions under way

    def __len__(self) -> int:
        return len(self.all)

    def connections_of(self, token_name: str) -> int:
        return self._per_token[token_name]

    @property
    def unauthenticated(self) -> int:
        return self._unauthenticated

    def authenticated(self) -> int:
        return sum(1 for session in self.all if session.caller is not None)

    def people(self) -> int:
        """Distinct people signed in with OpenID Connect (one with two tabs counts once)."""
        return len({session.caller.name for session in self.all
                    if session.caller is not None and session.caller.person is not None})

    def add(self, session: Session) -> None:
        self.all.add(session)
        self._count(session.caller, +1)

    def discard(self, session: Session) -> bool:
        """Forget a session; False when it was already gone."""
        if session not in self.all:
            return False
        self.all.discard(session)
        session.closed = True
        self._count(session.caller, -1)
        return True

    def log_in(self, session: Session, caller: Caller) -> None:
        """Its caller is now `caller` (a first login, another token on the same socket, or a
        refreshed one). A session that closed while its sign-in was being checked stays out."""
        if session.closed:
            return
        self._count(session.caller, -1)
        session.caller = caller
        self._count(caller, +1)

    def _count(self, caller: Caller | None, delta: int) -> None:
        if caller is None:
            self._unauthenticated += delta
            return
        self._per_token[caller.name] += delta
        if not self._per_token[caller.name]:
            del self._per_token[caller.name]

    def expire(self, now: float, notice_seconds: float, leeway_seconds: float) -> None:
        """Sessions of people whose token runs out: `auth.expiring` once `notice_seconds`
        before (again after each refresh), and closed with 4401 "token expired" at its
        exp + `leeway_seconds` (the same allowance a login gets)."""
        for session in list(self.all):
            person = session.caller.person if session.caller is not None else None
            if person is None or session.revoked:
                continue
            if now >= person.expires_at + leeway_seconds:
                log.info("token expired", caller=session.caller.name if session.caller else None,
                         address=session.address)
                session.revoked = True   # as for a revoked token: nothing it sends runs
                task = asyncio.create_task(session.connection.close(TOKEN_EXPIRED, "token expired"))
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
            elif now >= person.expires_at - notice_seconds and session.noticed_expiry != person.expires_at:
                session.noticed_expiry = person.expires_at
                session.push_event(event_message("auth.expiring", {
                    "expires_at": dt.datetime.fromtimestamp(person.expires_at, dt.timezone.utc).isoformat(),
                    "seconds_left": max(0, round(person.expires_at - now))}))

    def revoke(self, session: Session) -> Coroutine[Any, Any, None]:
        """Its token was removed or changed: close it with 1008 ("token revoked"). Marked
        first, so that nothing it sends after this moment runs — websockets still reads
        frames during the closing handshake (up to a second), and a client may keep
        sending through it."""
        session.revoked = True
        return session.connection.close(CloseCode.POLICY_VIOLATION, "token revoked")

    def publish(self, topic: str, payload: Any) -> None:
        """Push an event to every authenticated client (`changes` hints only to those that
        asked with live.hints): encoded once, written without waiting, dropped for a client
        that is too far behind (it learns nothing it would not get by asking again)."""
        message = event_message(topic, payload)
        hint = topic == HINT_TOPIC
        for session in self.all:
            if session.caller is not None and (session.wants_hints or not hint):
                session.push_event(message)

    def sweep(self) -> None:
        """Send held live updates to clients that caught up; disconnect those that stay past
        the send buffer limit for the send timeout."""
        limit = self._settings.max_send_buffer_bytes
        timeout = self._settings.send_timeout_seconds
        now = time.monotonic()
        for session in list(self.all):
            session.release_held_updates()
            unread = session.unread_bytes()
            if unread <= limit // 2 and not session.held_updates:
                session.behind_since = None  # caught up (or never behind)
            elif session.behind_since is None:
                session.behind_since = now
            elif now - session.behind_since >= timeout:
                self.slow_clients_dropped += 1
                log.warning("slow client dropped", address=session.address,
                            caller=session.caller.name if session.caller else None,
                            unread_bytes=session.unread_bytes(),
                            events_dropped=session.events_dropped,
                            behind_seconds=round(now - session.behind_since, 1))
                session.connection.abort()
