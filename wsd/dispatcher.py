"""The action registry: `(resource, action)` → handler coroutine, payload type, required role.

The dispatcher validates a request's payload against the action's declared msgspec type,
checks the caller's role, runs the handler and maps failures to `WsdError`s. It knows
nothing about leads or meetings; handler modules bring their own `ActionTable`.

Example:
    >>> table = ActionTable("conversations", [
    ...     write("update_agent_status", update_agent_status, UpdateAgentStatus)])
    >>> dispatcher = Dispatcher([table], cache=SingleFlightCache(ttl=2.0))
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterable, Literal, Mapping

import asyncpg
import msgspec

from wsd.cache import SingleFlightCache
from wsd.errors import Conflict, Forbidden, InvalidPayload, Unavailable, UnknownAction, WsdError
from wsd.runtime import Runtime

if TYPE_CHECKING:
    from wsd.config import Config
    from wsd.queries import Queries

__all__ = ["Action", "ActionTable", "Caller", "Context", "Dispatcher", "Handler", "NoPayload",
           "Paged", "Payload", "Role", "read", "write"]

Role = Literal["viewer", "admin"]
_ROLE_RANK: dict[str, int] = {"viewer": 0, "admin": 1}


class Payload(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of every action's payload type: unknown fields are an `invalid_payload`."""


class NoPayload(Payload):
    """For actions that take no parameters."""


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent a request: the token's name (for logs) and its role (for permissions)."""
    name: str
    role: Role


class Context:
    """What a handler may use, each with its type. Built per request by the server; handlers
    never see sockets.

    Args:
        pool: the asyncpg pool (one statement) or source of a transaction's connection.
        queries: the named SQL queries, typed by the generated `wsd.queries.Queries`.
        config: the daemon's `Config`.
        caller: who sent the request.
        runtime: the daemon's figures and calendar sync (`wsd.runtime.Runtime`); a
            `services` dict of the older form is still accepted.
    """

    __slots__ = ("pool", "queries", "config", "caller", "runtime")

    def __init__(self, pool: asyncpg.Pool, queries: Queries, config: Config, caller: Caller,
                 runtime: Runtime | Mapping[str, Any] | None = None) -> None:
        self.pool = pool
        self.queries = queries
        self.config = config
        self.caller = caller
        self.runtime = runtime if isinstance(runtime, Runtime) else Runtime.from_services(runtime or {})


@dataclass(frozen=True, slots=True)
class Paged:
    """A page of a list: `data` plus the opaque cursor of the next page (None on the last)."""
    data: list[Any]
    next_cursor: str | None


Handler = Callable[[Context, Any], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Action:
    name: str
    handler: Handler
    payload_type: type[Payload] = NoPayload
    role: Role = "viewer"
    writes: bool = False   # a successful call invalidates cached answers
    cached: bool = False   # answers are shared through the dispatcher's cache


def read(name: str, handler: Handler, payload_type: type[Payload] = NoPayload, *,
         cached: bool = False) -> Action:
    """A read action, open to viewers; `cached` for aggregates many clients poll."""
    return Action(name, handler, payload_type, role="viewer", cached=cached)


def write(name: str, handler: Handler, payload_type: type[Payload]) -> Action:
    """A write action: admins only, and it invalidates cached answers when it succeeds."""
    return Action(name, handler, payload_type, role="admin", writes=True)


@dataclass(frozen=True, slots=True)
class ActionTable:
    """The actions of one resource, as a handler module lists them."""
    resource: str
    actions: list[Action]


_PATH = re.compile(r"at `\$\.([^`]+)`")
_FIELD = re.compile(r"field `([^`]+)`")

_UNAVAILABLE = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.InterfaceError,
)


def _nul_path(value: Any, path: str = "") -> str | None:
    """The path of the first string holding U+0000, which no PostgreSQL text can store."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        items: Iterable[tuple[str, Any]] = ((f"{path}.{k}" if path else str(k), v) for k, v in value.items())
    elif isinstance(value, list):
        items = ((f"{path}[{n}]", v) for n, v in enumerate(value))
    else:
        return None
    for item_path, item in items:
        if (found := _nul_path(item, item_path)) is not None:
            return found
    return None


def validate_payload(payload: dict[str, Any], payload_type: type[Payload]) -> Payload:
    """Convert a JSON payload into the action's Struct, naming the offending field on failure."""
    if (nul_field := _nul_path(payload)) is not None:
        raise InvalidPayload("text may not contain the NUL character (U+0000)", {"field": nul_field})
    try:
        return msgspec.convert(payload, payload_type)
    except msgspec.ValidationError as error:
        text = str(error)
        # "Object missing required field `name` - at `$.features[2]`" → "features[2].name";
        # payload types' own checks name their field the same way ("field `end_date` ...").
        parts = [m.group(1) for pattern in (_PATH, _FIELD) if (m := pattern.search(text))]
        raise InvalidPayload(text.split(" - at ")[0], {"field": ".".join(parts) or None}) from None


class Dispatcher:
    """Looks up and runs actions. One instance serves every connection."""

    def __init__(self, tables: Iterable[ActionTable], cache: SingleFlightCache | None = None) -> None:
        self.cache = cache
        self._actions: dict[tuple[str, str], Action] = {}
        for table in tables:
            for action in table.actions:
                key = (table.resource, action.name)
                if key in self._actions:
                    raise ValueError(f"action registered twice: {key}")
                self._actions[key] = action

    def lookup(self, resource: str, action_name: str) -> Action:
        action = self._actions.get((resource, action_name))
        if action is None:
            raise UnknownAction(f"no action {resource}.{action_name}",
                                {"resource": resource, "action": action_name})
        return action

    async def dispatch(self, action: Action, context: Context, payload: dict[str, Any]) -> Any:
        """Authorize, validate and run `action`; every failure leaves as a `WsdError`.

        Anything that is not a `WsdError` nor a database outage propagates unchanged so the
        caller can log it with its traceback and answer `internal`.
        """
        if _ROLE_RANK[context.caller.role] < _ROLE_RANK[action.role]:
            raise Forbidden(f"this action needs the {action.role} role",
                            {"required_role": action.role, "role": context.caller.role})
        arguments = validate_payload(payload, action.payload_type)
        try:
            if action.cached and self.cache is not None:
                key = (action, msgspec.json.encode(arguments))
                return await self.cache.get(key, lambda: action.handler(context, arguments))
            result = await action.handler(context, arguments)
            if action.writes and self.cache is not None:
                self.cache.invalidate()
            return result
        except Exception as error:
            raise database_error(error) from None


def _refused_field(error: asyncpg.PostgresError) -> str | None:
    """The payload field behind a refused value: PostgreSQL names a column's CHECK
    `<table>_<column>_check`, and wsd's payload fields carry their column's name."""
    column = getattr(error, "column_name", None)
    if column:
        return str(column)
    constraint = str(getattr(error, "constraint_name", "") or "")
    table = str(getattr(error, "table_name", "") or "")
    if table and constraint.startswith(f"{table}_") and constraint.endswith("_check"):
        return constraint[len(table) + 1:-len("_check")] or None
    return None


def database_error(error: Exception) -> Exception:
    """The one mapping of a handler's failure to what the client sees.

    `WsdError`s pass unchanged; database refusals become `conflict`, `invalid_payload` or
    `unavailable`; anything else comes back as it is for the caller to log and answer
    `internal`.
    """
    if isinstance(error, WsdError):
        return error
    if isinstance(error, asyncpg.UniqueViolationError):
        return Conflict("a record with the same key already exists", {"constraint": error.constraint_name})
    if isinstance(error, (asyncpg.DataError, asyncpg.CheckViolationError)):
        # Values the payload types let through but PostgreSQL refuses.
        return InvalidPayload(f"a value was refused by the database: {error.message}",
                              {"field": _refused_field(error)})
    if isinstance(error, _UNAVAILABLE):
        return Unavailable("the database is not reachable, try again", {"reason": type(error).__name__})
    return error
