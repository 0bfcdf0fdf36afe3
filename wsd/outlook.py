"""Microsoft Graph calendar client: app-only auth, one mailbox, over aiohttp.

Speaks Graph v1.0 on `/users/{mailbox}/...`: create, update and cancel events, busy times
(`calendar/getSchedule`) and incremental sync (`calendarView/delta`). Every call has a
timeout; 429/503/504, timeouts and dropped connections are retried after `Retry-After` or
with capped exponential backoff and jitter; a 401 `InvalidAuthenticationToken` fetches a
new token once. At most 4 requests per mailbox are in flight (Graph's own limit).

Creates always carry `transactionId` (the meeting's id), so a create retried after a lost
reply never makes a second event.

Example:
    >>> graph = GraphClient(config.outlook)
    >>> event = await graph.create_event(meeting)    # a GraphEvent with Graph's id
    >>> await graph.close()
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable
from urllib.parse import quote

import aiohttp

from wsd.config import OutlookConfig

__all__ = ["GraphClient", "GraphError", "ResyncRequired", "GraphEvent", "DeltaRound", "graph_time",
           "parse_graph_time"]

UTC = dt.timezone.utc
SCOPE = "https://graph.microsoft.com/.default"
MAX_CONCURRENT_PER_MAILBOX = 4
TRANSIENT_STATUSES = {429, 503, 504}
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 30.0
TRIES_PER_CALL = 4


class GraphError(Exception):
    """Graph refused or could not be reached. `transient` errors are worth retrying later."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None,
                 transient: bool = False) -> None:
        super().__init__(message)
        self.status, self.code, self.transient = status, code, transient


class ResyncRequired(Exception):
    """The delta link is no longer valid (410, syncStateNotFound, resyncRequired)."""


def graph_time(instant: dt.datetime) -> dict[str, str]:
    """Graph's dateTimeTimeZone, always in UTC."""
    return {"dateTime": instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"}


def parse_graph_time(value: dict[str, str]) -> dt.datetime:
    """Reads `{"dateTime": "2024-01-15T10:00:00.0000000", "timeZone": "UTC"}` (7 fraction digits)."""
    text = value["dateTime"]
    if "." in text:
        head, fraction = text.split(".", 1)
        text = f"{head}.{fraction[:6]}"
    parsed = dt.datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        from zoneinfo import ZoneInfo
        zone = value.get("timeZone") or "UTC"
        parsed = parsed.replace(tzinfo=UTC if zone == "UTC" else ZoneInfo(zone))
    return parsed.astimezone(UTC)


@dataclass(frozen=True)
class GraphEvent:
    id: str
    removed: bool = False
    change_key: str | None = None
    subject: str | None = None
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    is_cancelled: bool = False
    transaction_id: str | None = None
    show_as: str = "busy"

    @classmethod
    def from_graph(cls, item: dict[str, Any]) -> "GraphEvent":
        if "@removed" in item:
            return cls(id=item["id"], removed=True)
        return cls(id=item["id"], change_key=item.get("changeKey"), subject=item.get("subject"),
                   start=parse_graph_time(item["start"]), end=parse_graph_time(item["end"]),
                   is_cancelled=bool(item.get("isCancelled")), transaction_id=item.get("transactionId"),
                   show_as=item.get("showAs") or "busy")


@dataclass
class DeltaRound:
    events: list[GraphEvent] = field(default_factory=list)
    delta_link: str = ""


async def _json_or_none(response: aiohttp.ClientResponse) -> Any:
    """The JSON body, or None for an empty or non-JSON one (a proxy's HTML error page)."""
    try:
        return await response.json(content_type=None)
    except ValueError:
        return None


class GraphClient:
    def __init__(self, settings: OutlookConfig, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 jitter: Callable[[], float] = random.random, user_agent: str = "wsd") -> None:
        """`user_agent`: Graph asks clients to identify themselves; the daemon passes one that
        names its instance, so Microsoft's logs tell which wsd process called."""
        self.settings = settings
        self._user_agent = user_agent
        self._sleep = sleep
        self._jitter = jitter
        self._session: aiohttp.ClientSession | None = None
        self._token: str | None = None
        self._token_expires = 0.0
        self._token_lock = asyncio.Lock()
        self._slots = asyncio.Semaphore(MAX_CONCURRENT_PER_MAILBOX)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout_seconds))
        return self._session

    @property
    def _mailbox_url(self) -> str:
        return f"{self.settings.graph_url.rstrip('/')}/users/{quote(self.settings.mailbox)}"

    # -- token -------------------------------------------------------------------------------

    async def _access_token(self, refused: str | None = None) -> str:
        """The cached token, or a new one when it expires soon or Graph refused `refused`
        (unless another call already replaced that one)."""
        async with self._token_lock:
            if self._token and self._token != refused and time.monotonic() < self._token_expires:
                return self._token
            url = f"{self.settings.login_url.rstrip('/')}/{quote(self.settings.tenant_id)}/oauth2/v2.0/token"
            form = {"client_id": self.settings.client_id, "client_secret": self.settings.client_secret,
                    "scope": SCOPE, "grant_type": "client_credentials"}
            try:
                async with self.session.post(url, data=form) as response:
                    body = await _json_or_none(response) or {}
                    if response.status != 200:
                        error = body.get("error", "token_error")
                        raise GraphError(f"token request refused: {error}", response.status, str(error),
                                         transient=response.status >= 500)
            except (aiohttp.ClientError, asyncio.TimeoutError) as failure:
                raise GraphError(f"token endpoint unreachable: {type(failure).__name__}",
                                 transient=True) from None
            lifetime = float(body["expires_in"])
            # Renew shortly before expiry: a minute early, or a tenth early for short lifetimes.
            self._token_expires = time.monotonic() + lifetime - min(60.0, lifetime / 10)
            self._token = body["access_token"]
            return self._token

    # -- calls -------------------------------------------------------------------------------

    def _backoff(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            try:
                return max(0.0, float(retry_after))
            except ValueError:
                pass
        delay = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** attempt)
        return float(delay * (0.5 + self._jitter() / 2))

    async def _call(self, method: str, url: str, *, json: Any = None, deadline: float | None = None,
                    prefer: str | None = None) -> tuple[int, Any]:
        """One Graph call with its retries. Returns (status, JSON body or None).

        Args:
            deadline: a `time.monotonic()` instant after which no retry is waited for; the
                last transient error is raised instead.
        """
        renewed = False
        attempt = 0
        while True:
            token = await self._access_token()
            request_headers = {"Authorization": f"Bearer {token}", "User-Agent": self._user_agent,
                               "Prefer": ", ".join(filter(None, ['outlook.timezone="UTC"', prefer]))}
            retry_after: str | None = None
            try:
                async with self._slots, self.session.request(method, url, json=json,
                                                             headers=request_headers) as response:
                    body = await _json_or_none(response)
                    if response.status < 400:
                        return response.status, body
                    error = (body or {}).get("error", {}) if isinstance(body, dict) else {}
                    code, message = error.get("code"), error.get("message", f"HTTP {response.status}")
                    if response.status == 401 and code == "InvalidAuthenticationToken" and not renewed:
                        renewed = True
                        await self._access_token(refused=token)
                        continue
                    failure = GraphError(message, response.status, code,
                                         transient=response.status in TRANSIENT_STATUSES)
                    retry_after = response.headers.get("Retry-After")
            except (aiohttp.ClientError, asyncio.TimeoutError) as problem:
                failure = GraphError(f"Graph unreachable: {type(problem).__name__}", transient=True)
            if not failure.transient or attempt + 1 >= TRIES_PER_CALL:
                raise failure
            delay = self._backoff(attempt, retry_after)
            if deadline is not None and time.monotonic() + delay > deadline:
                raise failure
            attempt += 1
            await self._sleep(delay)

    # -- events ------------------------------------------------------------------------------

    @staticmethod
    def event_body(meeting: dict[str, Any]) -> dict[str, Any]:
        return {
            "subject": meeting["subject"],
            "body": {"contentType": "text",
                     "content": f"Reunión con {meeting['attendee_email']} (wsd meeting {meeting['id']})"},
            "start": graph_time(meeting["start_time"]),
            "end": graph_time(meeting["end_time"]),
            "attendees": [{"emailAddress": {"address": meeting["attendee_email"]}, "type": "required"}],
        }

    async def create_event(self, meeting: dict[str, Any], deadline: float | None = None) -> GraphEvent:
        """Creates the meeting's event; `transactionId` makes a repeated create return the first."""
        body = {**self.event_body(meeting), "transactionId": str(meeting["id"])}
        _, event = await self._call("POST", f"{self._mailbox_url}/events", json=body, deadline=deadline)
        return GraphEvent.from_graph(event)

    async def update_event(self, event_id: str, meeting: dict[str, Any],
                           deadline: float | None = None) -> GraphEvent:
        body = self.event_body(meeting)
        del body["attendees"]  # attendees are fixed at creation; re-sending re-invites them
        _, event = await self._call("PATCH", f"{self._mailbox_url}/events/{quote(event_id)}", json=body,
                                    deadline=deadline)
        return GraphEvent.from_graph(event)

    async def cancel_event(self, event_id: str, comment: str, deadline: float | None = None) -> None:
        """Cancels (notifying attendees); deletes instead when the mailbox is not the organizer."""
        url = f"{self._mailbox_url}/events/{quote(event_id)}"
        try:
            await self._call("POST", f"{url}/cancel", json={"comment": comment}, deadline=deadline)
        except GraphError as error:
            if error.status == 404:
                return  # already gone from the calendar: cancelled is what we wanted
            if error.status != 400 or "organizer" not in str(error).lower():
                raise
            try:
                await self._call("DELETE", url, deadline=deadline)
            except GraphError as gone:
                if gone.status != 404:
                    raise

    async def busy_times(self, start: dt.datetime, end: dt.datetime) -> list[tuple[dt.datetime, dt.datetime, str]]:
        """Busy, tentative and out-of-office blocks of the mailbox in [start, end)."""
        body = {"schedules": [self.settings.mailbox], "startTime": graph_time(start),
                "endTime": graph_time(end), "availabilityViewInterval": 15}
        _, reply = await self._call("POST", f"{self._mailbox_url}/calendar/getSchedule", json=body)
        blocks = []
        for schedule in reply.get("value", []):
            for item in schedule.get("scheduleItems", []):
                if item.get("status") in ("busy", "tentative", "oof"):
                    blocks.append((parse_graph_time(item["start"]), parse_graph_time(item["end"]),
                                   item["status"]))
        return blocks

    async def calendar_delta(self, window_start: dt.datetime, window_end: dt.datetime,
                             delta_link: str | None) -> DeltaRound:
        """One delta round: every page until the deltaLink. A stored `delta_link` continues the
        previous round; without one the round is a full sync of the window."""
        if delta_link:
            url = delta_link
        else:
            start = window_start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            end = window_end.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            url = f"{self._mailbox_url}/calendarView/delta?startDateTime={start}&endDateTime={end}"
        result = DeltaRound()
        while True:
            try:
                _, page = await self._call("GET", url, prefer="odata.maxpagesize=50")
            except GraphError as error:
                if error.status == 410 or error.code in ("syncStateNotFound", "resyncRequired",
                                                         "SyncStateNotFound"):
                    raise ResyncRequired(str(error)) from None
                raise
            result.events += [GraphEvent.from_graph(item) for item in page.get("value", [])]
            if "@odata.nextLink" in page:
                url = page["@odata.nextLink"]
            else:
                result.delta_link = page["@odata.deltaLink"]
                return result
