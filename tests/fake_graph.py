"""A fake Microsoft Graph for tests: a real aiohttp server on loopback speaking Graph's wire
format for what wsd uses, with switches a test flips to make it misbehave.

Endpoints: the v2.0 token endpoint; on /v1.0/users/{mailbox}: POST /events (with
transactionId dedupe), PATCH /events/{id}, POST /events/{id}/cancel, DELETE /events/{id},
POST /calendar/getSchedule and GET /calendarView/delta (small pages, nextLink/deltaLink,
@removed). Every request to /v1.0 is recorded in `requests`.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import itertools
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

UTC = dt.timezone.utc
REQUEST_JSON = web.RequestKey("json", object)
MAILBOX = "ventas@empresa.example"
TENANT = "test-tenant"
CLIENT_ID = "test-client"
CLIENT_SECRET = "test-secret-value"


def graph_time(instant: dt.datetime) -> dict[str, str]:
    return {"dateTime": instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.0000000"), "timeZone": "UTC"}


def parse_time(value: dict[str, str]) -> dt.datetime:
    assert value["timeZone"] == "UTC", value
    return dt.datetime.fromisoformat(value["dateTime"].split(".")[0]).replace(tzinfo=UTC)


def graph_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status, headers=headers)


@dataclass
class Event:
    id: str
    subject: str
    start: dt.datetime
    end: dt.datetime
    organizer: str
    transaction_id: str | None = None
    attendees: list[dict[str, Any]] = field(default_factory=list)
    body: dict[str, Any] = field(default_factory=dict)
    show_as: str = "busy"
    change_key: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    ical_uid: str = field(default_factory=lambda: "040000008200E00074C5B7101A82E008" + secrets.token_hex(24).upper())

    def json(self) -> dict[str, Any]:
        return {
            "@odata.type": "#microsoft.graph.event", "@odata.etag": f'W/"{self.change_key}"',
            "id": self.id, "changeKey": self.change_key, "iCalUId": self.ical_uid,
            "transactionId": self.transaction_id, "subject": self.subject, "body": self.body,
            "start": graph_time(self.start), "end": graph_time(self.end), "isCancelled": False,
            "isOrganizer": self.organizer == MAILBOX, "showAs": self.show_as,
            "organizer": {"emailAddress": {"address": self.organizer}}, "attendees": self.attendees,
            "webLink": f"https://outlook.office365.com/owa/?itemid={self.id}&exvsurl=1&path=/calendar/item"}


class FakeGraph:
    def __init__(self, page_size: int = 2, token_lifetime: int = 3600) -> None:
        self.page_size = page_size
        self.token_lifetime = token_lifetime
        self.tokens: dict[str, float] = {}   # issued tokens outlive reset(), as they would
        self.reset()
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    def reset(self) -> None:
        self.events: dict[str, Event] = {}
        self.requests: list[dict[str, Any]] = []
        self.token_requests: list[dict[str, str]] = []
        self.faults: list[tuple[str, str | None]] = []
        self.down = False
        self.changes: list[tuple[int, str]] = []         # (version, event id) per mutation
        self.version = 0
        self.valid_delta_from = 0                        # delta tokens older than this → 410
        self.rounds: dict[str, list[dict[str, Any]]] = {}
        self._ids = itertools.count(1)

    # -- switches a test flips -------------------------------------------------------------------

    def fail_next(self, count: int, kind: str, retry_after: str | None = None) -> None:
        """The next `count` Graph calls fail: "429", "503", "timeout" or "drop"."""
        self.faults += [(kind, retry_after)] * count

    def expire_tokens(self) -> None:
        self.tokens.clear()

    def invalidate_delta_links(self) -> None:
        self.valid_delta_from = self.version + 1

    def person_moves(self, event_id: str, start: dt.datetime, end: dt.datetime) -> None:
        event = self.events[event_id]
        event.start, event.end, event.change_key = start, end, secrets.token_urlsafe(12)
        self._changed(event_id)

    def person_deletes(self, event_id: str) -> None:
        del self.events[event_id]
        self._changed(event_id)

    def person_creates(self, subject: str, start: dt.datetime, end: dt.datetime, show_as: str = "busy",
                       organizer: str = MAILBOX) -> str:
        event = Event(id=self._new_id(), subject=subject, start=start, end=end, organizer=organizer,
                      show_as=show_as)
        self.events[event.id] = event
        self._changed(event.id)
        return event.id

    def calls(self, method: str, suffix: str = "") -> list[dict[str, Any]]:
        return [r for r in self.requests if r["method"] == method and r["path"].endswith(suffix)]

    # -- server --------------------------------------------------------------------------------

    async def start(self) -> str:
        app = web.Application(middlewares=[self._faults_and_auth])
        prefix = "/v1.0/users/{mailbox}"
        app.router.add_post("/{tenant}/oauth2/v2.0/token", self._token)
        app.router.add_post(prefix + "/events", self._create)
        app.router.add_patch(prefix + "/events/{id}", self._update)
        app.router.add_post(prefix + "/events/{id}/cancel", self._cancel)
        app.router.add_delete(prefix + "/events/{id}", self._delete)
        app.router.add_post(prefix + "/calendar/getSchedule", self._schedule)
        app.router.add_get(prefix + "/calendarView/delta", self._delta)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _new_id(self) -> str:
        return "AAMkAGI2" + base64.urlsafe_b64encode(f"event-{next(self._ids)}".encode()).decode().rstrip("=")

    def _changed(self, event_id: str) -> None:
        self.version += 1
        self.changes.append((self.version, event_id))

    @web.middleware
    async def _faults_and_auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if not request.path.startswith("/v1.0/"):
            return await handler(request)
        body = await request.json() if request.can_read_body else None
        self.requests.append({"at": time.monotonic(), "method": request.method, "path": request.path, "query": dict(request.query),
                              "json": body, "headers": dict(request.headers)})
        if self.down:
            return graph_error(503, "ServiceNotAvailable", "The service is unavailable.", {"Retry-After": "0.05"})
        if self.faults:
            kind, retry_after = self.faults.pop(0)
            if kind == "429":
                return graph_error(429, "TooManyRequests", "Please retry again later.",
                                   {"Retry-After": retry_after or "0.1"})
            if kind in ("400", "403"):
                code = "ErrorInvalidRequest" if kind == "400" else "ErrorAccessDenied"
                return graph_error(int(kind), code, "The request was refused.")
            if kind == "503":
                return graph_error(503, "ServiceNotAvailable", "The service is unavailable.",
                                   {"Retry-After": retry_after} if retry_after else None)
            if kind == "timeout":
                await asyncio.sleep(30)
            if kind == "malformed":  # a 2xx body missing what Graph documents (no "id")
                return web.json_response({"@odata.context": "unexpected"}, status=201)
            if kind == "drop":
                assert request.transport is not None
                request.transport.close()
                return web.Response(status=500)
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if self.tokens.get(token, 0) < time.monotonic():
            return graph_error(401, "InvalidAuthenticationToken", "Access token has expired or is not yet valid.")
        if request.match_info.get("mailbox") != MAILBOX:
            return graph_error(404, "ErrorInvalidUser", "The requested user is invalid.")
        request[REQUEST_JSON] = body
        return await handler(request)

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        self.token_requests.append(dict(form))  # type: ignore[arg-type]
        if (request.match_info["tenant"], form.get("client_id"), form.get("client_secret"),
                form.get("grant_type"), form.get("scope")) != (
                TENANT, CLIENT_ID, CLIENT_SECRET, "client_credentials", "https://graph.microsoft.com/.default"):
            return web.json_response({"error": "invalid_client", "error_description": "AADSTS7000215"},
                                     status=401)
        token = secrets.token_urlsafe(24)
        self.tokens[token] = time.monotonic() + self.token_lifetime
        return web.json_response({"token_type": "Bearer", "expires_in": self.token_lifetime,
                                  "ext_expires_in": self.token_lifetime, "access_token": token})

    async def _create(self, request: web.Request) -> web.Response:
        body = request[REQUEST_JSON]
        for key in ("subject", "start", "end"):
            if key not in body:
                return graph_error(400, "ErrorInvalidRequest", f"{key} is required")
        transaction_id = body.get("transactionId")
        for event in self.events.values():
            if transaction_id and event.transaction_id == transaction_id:
                return web.json_response(event.json(), status=201)
        event = Event(id=self._new_id(), subject=body["subject"], start=parse_time(body["start"]),
                      end=parse_time(body["end"]), organizer=MAILBOX, transaction_id=transaction_id,
                      attendees=body.get("attendees", []), body=body.get("body", {}))
        self.events[event.id] = event
        self._changed(event.id)
        return web.json_response(event.json(), status=201)

    async def _update(self, request: web.Request) -> web.Response:
        event = self.events.get(request.match_info["id"])
        if event is None:
            return graph_error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        body = request[REQUEST_JSON]
        event.subject = body.get("subject", event.subject)
        if "start" in body:
            event.start = parse_time(body["start"])
        if "end" in body:
            event.end = parse_time(body["end"])
        event.change_key = secrets.token_urlsafe(12)
        self._changed(event.id)
        return web.json_response(event.json())

    async def _cancel(self, request: web.Request) -> web.Response:
        event = self.events.get(request.match_info["id"])
        if event is None:
            return graph_error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        if event.organizer != MAILBOX:
            return graph_error(400, "ErrorInvalidRequest",
                               "Your request can't be completed. You need to be an organizer to cancel a meeting.")
        self.person_deletes(event.id)
        return web.Response(status=202)

    async def _delete(self, request: web.Request) -> web.Response:
        if request.match_info["id"] not in self.events:
            return graph_error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        self.person_deletes(request.match_info["id"])
        return web.Response(status=204)

    async def _schedule(self, request: web.Request) -> web.Response:
        body = request[REQUEST_JSON]
        start, end = parse_time(body["startTime"]), parse_time(body["endTime"])
        items = [{"isPrivate": False, "status": e.show_as, "subject": e.subject, "location": "",
                  "start": graph_time(e.start), "end": graph_time(e.end)}
                 for e in sorted(self.events.values(), key=lambda e: e.start)
                 if e.start < end and e.end > start and e.show_as != "free"]
        return web.json_response({"value": [{"scheduleId": MAILBOX, "availabilityView": "",
                                             "scheduleItems": items}]})

    async def _delta(self, request: web.Request) -> web.Response:
        query = request.query
        base = f"{self.base_url}{request.path}"
        if "$skiptoken" in query:
            return self._page(base, query["$skiptoken"])
        if "$deltatoken" in query:
            since, start, end = query["$deltatoken"].split("~")
            if int(since) < self.valid_delta_from:
                return graph_error(410, "syncStateNotFound", "The sync state generation is not found.")
            window = (dt.datetime.fromtimestamp(int(start), UTC), dt.datetime.fromtimestamp(int(end), UTC))
            changed = sorted({event_id for version, event_id in self.changes if version > int(since)})
            items = [self.events[i].json() if i in self.events else
                     {"@odata.type": "#microsoft.graph.event", "id": i, "@removed": {"reason": "deleted"}}
                     for i in changed
                     if i not in self.events or (self.events[i].start < window[1] and self.events[i].end > window[0])]
        else:
            window = (dt.datetime.fromisoformat(query["startDateTime"].replace("Z", "+00:00")),
                      dt.datetime.fromisoformat(query["endDateTime"].replace("Z", "+00:00")))
            items = [e.json() for e in sorted(self.events.values(), key=lambda e: e.start)
                     if e.start < window[1] and e.end > window[0]]
        round_id = secrets.token_urlsafe(8)
        self.rounds[round_id] = items
        self.rounds[round_id + ":next"] = [f"{self.version}~{int(window[0].timestamp())}~{int(window[1].timestamp())}"]
        return self._page(base, f"{round_id}.0")

    def _page(self, base: str, skiptoken: str) -> web.Response:
        round_id, offset = skiptoken.rsplit(".", 1)
        items = self.rounds[round_id]
        start = int(offset)
        page: dict[str, Any] = {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Collection(event)",
                                "value": items[start:start + self.page_size]}
        if start + self.page_size < len(items):
            page["@odata.nextLink"] = f"{base}?$skiptoken={round_id}.{start + self.page_size}"
        else:
            page["@odata.deltaLink"] = f"{base}?$deltatoken={self.rounds[round_id + ':next'][0]}"
        return web.json_response(page)
