"""The `live` resource's requests on a connection — `live.subscribe`, `live.unsubscribe`,
`live.hints` — turned into what the request pipeline runs (wsd/live.py keeps the queries)."""

from __future__ import annotations

from functools import partial
from typing import Any, Awaitable, Callable

from wsd.dispatcher import validate_payload
from wsd.errors import UnknownAction
from wsd.live import LIVE_RESOURCE, Hints, LiveQueries
from wsd.protocol import Request
from wsd.sessions import Session

__all__ = ["LiveRequests"]


class LiveRequests:
    """What each `live.*` action runs for a session."""

    def __init__(self, live: LiveQueries) -> None:
        self._live = live

    def call_for(self, session: Session, request: Request) -> Callable[[], Awaitable[Any]]:
        """Raises UnknownAction before anything runs."""
        if request.action == "subscribe":
            return partial(self._live.subscribe, session, request.payload)
        if request.action == "unsubscribe":
            return partial(self._unsubscribe, session, request.payload)
        if request.action == "hints":
            return partial(self._hints, session, request.payload)
        raise UnknownAction(f"no action live.{request.action}",
                            {"resource": LIVE_RESOURCE, "action": request.action})

    async def _unsubscribe(self, session: Session, payload: dict[str, Any]) -> dict[str, Any]:
        self._live.unsubscribe(session, payload)
        return {"subscription": payload.get("subscription")}

    @staticmethod
    async def _hints(session: Session, payload: dict[str, Any]) -> dict[str, bool]:
        wanted = validate_payload(payload, Hints)
        assert isinstance(wanted, Hints)
        session.wants_hints = wanted.enabled
        return {"hints": wanted.enabled}
