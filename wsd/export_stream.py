"""An export request on a connection: the `export.<name>` call checked like the read it
mirrors, then its CSV streamed as `chunk` messages through the session's bounded sending,
one export at a time per caller (wsd/export.py runs the COPY).
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any, Awaitable, Callable

from wsd.actions import Context, Payload
from wsd.dispatcher import Dispatcher, database_error
from wsd.errors import InvalidPayload, RateLimited, Unavailable, UnknownAction
from wsd.export import PAGING, Export, run_export
from wsd.protocol import Request, chunk_message
from wsd.sessions import Session

__all__ = ["Exports", "EXPORT_RESOURCE"]

EXPORT_RESOURCE = "export"
# How often an export waiting for its client to read looks again.
EXPORT_WAIT_SECONDS = 0.005


class Exports:
    """The exports offered (`wsd.handlers.exports.EXPORTS`) and who has one running."""

    def __init__(self, dispatcher: Dispatcher, exports: dict[str, Export] | None = None) -> None:
        self._dispatcher = dispatcher
        self._exports = exports or {}
        self._exporting: set[str] = set()   # callers (token names) with an export running

    def call_for(self, session: Session, request: Request,
                 context: Context) -> Callable[[], Awaitable[dict[str, Any]]]:
        """What an export runs: the read it mirrors decides the role and checks the payload
        (less `limit` and `cursor`, plus `bom`) before anything runs."""
        export = self._exports.get(request.action)
        if export is None:
            raise UnknownAction(f"no action export.{request.action}",
                                {"resource": EXPORT_RESOURCE, "action": request.action})
        payload = {k: v for k, v in request.payload.items() if k not in (*PAGING, "bom")}
        bom = request.payload.get("bom", False)
        if not isinstance(bom, bool):
            raise InvalidPayload("bom is true or false", {"field": "bom"})
        arguments = self._dispatcher.authorize(self._dispatcher.lookup(*export.read),
                                               context.caller, payload)
        return partial(self._export, session, request, export, context, arguments, bom)

    async def _export(self, session: Session, request: Request, export: Export, context: Context,
                      arguments: Payload, bom: bool) -> dict[str, Any]:
        """Stream an export as `chunk` messages, one export at a time per caller."""
        caller = context.caller.name
        if caller in self._exporting:
            raise RateLimited("an export is already running for this caller: one at a time",
                              {"limit": 1})
        self._exporting.add(caller)
        try:
            return await run_export(context, export, arguments, bom,
                                    partial(self._send, session, request))
        except Exception as error:
            mapped = database_error(error)
            if mapped is error:
                raise
            raise mapped from None
        finally:
            self._exporting.discard(caller)

    @staticmethod
    async def _send(session: Session, request: Request, text: str) -> None:
        """The bounded send path: wait while the client has half the send limit unread, so
        the cursor pauses for a slow reader and wsd holds one batch at a time."""
        while session.unread_bytes() > session.send_limit // 2 and session.connection.is_open():
            await asyncio.sleep(EXPORT_WAIT_SECONDS)
        if not session.connection.is_open():
            raise Unavailable("the client went away during the export", {"reason": "closed"})
        session.push(chunk_message(request.id, text))
