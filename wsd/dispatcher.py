"""Running actions: `(resource, action)` → the declared `Action` (wsd/actions.py), then the
payload validated against its msgspec type, the caller's role checked, the handler run (in
one transaction with its idempotency key and trail entry for a write, through the cache for
a cached read) and every failure mapped to a `WsdError`. It knows nothing about leads or
meetings; handler modules bring their own `ActionTable`.

Example:
    >>> dispatcher = Dispatcher(ALL_TABLES, cache=SingleFlightCache(ttl=2.0))
    >>> await dispatcher.dispatch(dispatcher.lookup("leads", "get_lead"), context, payload)
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import re
from typing import TYPE_CHECKING, Any, Awaitable, Iterable

import asyncpg
import msgspec

from wsd.actions import ROLE_RANK, Action, ActionTable, Caller, Context, Paged, Payload
from wsd.cache import MISS, SingleFlightCache
from wsd.errors import Conflict, Forbidden, InvalidPayload, Unavailable, UnknownAction, WsdError
from wsd.protocol import Encoded, encode
from wsd.trail import entry_fields

if TYPE_CHECKING:
    from wsd.queries import Executor

__all__ = ["Dispatcher", "CommitOutcomeUnknown", "database_error", "validate_payload"]

_PATH = re.compile(r"at `\$\.([^`]+)`")
_FIELD = re.compile(r"field `([^`]+)`")

_UNAVAILABLE = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    # Class 53: out of connection slots ("too many clients": TooManyConnectionsError when the
    # pool opens one), memory or disk. The server is there but cannot take the work now.
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.InterfaceError,
    # A connection that broke under a statement is left "in another operation".
    asyncpg.InternalClientError,
)


def _nul_path(value: Any) -> str | None:
    """The path of the first string holding U+0000, which no PostgreSQL text can store.
    Walked with a stack, not recursion: a payload may nest as deep as the decoder follows."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return path
        elif isinstance(item, dict):
            stack.extend((f"{path}.{key}" if path else str(key), child)
                         for key, child in reversed(item.items()))
        elif isinstance(item, list):
            stack.extend((f"{path}[{n}]", child) for n, child in reversed(list(enumerate(item))))
    return None


def _whole_numbers(value: Any) -> Any:
    """`value` with every finite float that has no fraction turned into its int."""
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, dict):
        return {key: _whole_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(item) for item in value]
    return value


class CommitOutcomeUnknown(Exception):
    """The connection failed while COMMIT was on its way: the write may or may not be stored."""


# The one instance of each field-less payload type (NoPayload): an empty payload converts to
# it without msgspec, and nothing can change a Struct without fields.
_EMPTY: dict[type[Payload], Payload] = {}


def validate_payload(payload: dict[str, Any], payload_type: type[Payload]) -> Payload:
    """Convert a JSON payload into the action's Struct, naming the offending field on failure."""
    if not payload:
        empty = _EMPTY.get(payload_type)
        if empty is not None:
            return empty
        if not payload_type.__struct_fields__:
            empty = _EMPTY[payload_type] = msgspec.convert(payload, payload_type)
            return empty
    try:
        # One C-speed scan first (the encoder writes U+0000 as \u0000), the walk only on a hit.
        if b"\\u0000" in msgspec.json.encode(payload) and (nul_field := _nul_path(payload)) is not None:
            raise InvalidPayload("text may not contain the NUL character (U+0000)", {"field": nul_field})
        return msgspec.convert(payload, payload_type)
    except RecursionError:
        # A payload nested past the recursion limit (a frame's decoder stops there, but a
        # payload built in process, or met deeper in the stack, need not): no payload type
        # takes more than a few levels, so it is a wrong type, too deep to name its field.
        raise InvalidPayload("payload nests too deeply", {"field": None}) from None
    except msgspec.ValidationError as error:
        text = str(error)
        whole = _whole_numbers(payload) if "got `float`" in text else payload
        if whole is not payload and msgspec.json.encode(whole) != msgspec.json.encode(payload):
            # JSON Schema's `integer` is any number without a fraction (5.0, 1e2), so the
            # daemon reads those as the integer too; only this refused path pays the walk.
            return validate_payload(whole, payload_type)
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
                self._actions[key] = dataclasses.replace(action, resource=table.resource)

    def lookup(self, resource: str, action_name: str) -> Action:
        action = self._actions.get((resource, action_name))
        if action is None:
            raise UnknownAction(f"no action {resource}.{action_name}",
                                {"resource": resource, "action": action_name})
        return action

    @staticmethod
    def authorize(action: Action, caller: Caller, payload: dict[str, Any]) -> Payload:
        """The role check and the payload's validation: the action's arguments, or a `WsdError`."""
        if ROLE_RANK[caller.role] < ROLE_RANK[action.role]:
            raise Forbidden(f"this action needs the {action.role} role",
                            {"required_role": action.role, "role": caller.role})
        return validate_payload(payload, action.payload_type)

    def stored_answer(self, action: Action, arguments: Payload) -> Any:
        """A cached action's stored answer for `arguments` if it is still good, else `MISS`
        (answer it with `dispatch`). Never waits, so a server can answer it inline."""
        if not action.cached or self.cache is None:
            return MISS
        return self.cache.peek((action, msgspec.json.encode(arguments)), action.topics)

    async def dispatch(self, action: Action, context: Context, payload: dict[str, Any]) -> Any:
        """Authorize, validate and run `action`; every failure leaves as a `WsdError`.

        Anything that is not a `WsdError` nor a database outage propagates unchanged so the
        caller can log it with its traceback and answer `internal`. A cached action's answer
        comes back `Encoded` (encoded once, shared by every request it answers).
        """
        arguments = self.authorize(action, context.caller, payload)
        try:
            if action.cached and self.cache is not None:
                key = (action, msgspec.json.encode(arguments))
                return await self.cache.get(key, action.topics,
                                            lambda: _encoded(action.handler(context, arguments)))
            if not action.writes:
                return await action.handler(context, arguments)
            if action.transactional:
                result = await self._in_transaction(action, context, arguments)
            else:
                # It changed nothing in PostgreSQL itself: its entry follows once it is done.
                result = await action.handler(context, arguments)
                await self._record(context.pool, action, context, arguments, result, "done")
            if self.cache is not None:
                self.cache.invalidate(action.changes)
            return await action.then(context, result) if action.then is not None else result
        except CommitOutcomeUnknown as error:
            cause = error.__cause__
            raise Unavailable("the database connection failed while the write was committing: "
                              "it may or may not be stored; read it back, or retry with the same "
                              "idempotency_key", {"reason": type(cause).__name__,
                                                  "outcome": "unknown"}) from None
        except Exception as error:
            mapped = database_error(error)
            if mapped is error:
                raise
            raise mapped from None

    async def _in_transaction(self, action: Action, context: Context, arguments: Payload) -> Any:
        """Run a write handler in one transaction, with its idempotency key's claim and result.

        Raises:
            Unavailable: the database failed before COMMIT was sent (`outcome: not_applied`).
            CommitOutcomeUnknown: the connection failed during COMMIT.
        """
        key = getattr(arguments, "idempotency_key", None)
        try:
            async with context.pool.acquire() as connection:
                transaction = connection.transaction()
                await transaction.start()
                try:
                    if key is not None:
                        replay = await self._claim_key(context, connection, action, arguments, key)
                        if replay is not None:
                            await transaction.rollback()
                            return replay["result"]
                    result = await action.handler(
                        dataclasses.replace(context, transaction_connection=connection), arguments)
                    await self._record(connection, action, context, arguments, result, "committed")
                    if key is not None:
                        await context.queries.idempotency.store_result(
                            connection, caller=context.caller.name, action=action.name, key=key,
                            result=msgspec.json.decode(encode(result)))
                    await context.queries.changes.notify_topics(connection, topics=sorted(action.changes))
                except BaseException:
                    with contextlib.suppress(*_UNAVAILABLE):
                        await transaction.rollback()
                    raise
                try:
                    await transaction.commit()
                except _UNAVAILABLE as error:
                    raise CommitOutcomeUnknown() from error
        except _UNAVAILABLE as error:
            unavailable = _unavailable(error)
            unavailable.details["outcome"] = "not_applied"  # nothing was committed
            raise unavailable from None
        return result

    @staticmethod
    async def _record(connection: Executor, action: Action, context: Context, arguments: Payload,
                      result: Any, outcome: str) -> None:
        """The write's trail entry: who (the caller), what (action, ids, masked payload), the
        outcome; in the write's transaction when it has one."""
        await context.queries.trail.record_entry(
            connection, **context.caller.trail_actor(), resource=action.resource, action=action.name, outcome=outcome,
            **entry_fields(arguments, result))

    @staticmethod
    async def _claim_key(context: Context, connection: Executor, action: Action,
                         arguments: Payload, key: str) -> Any:
        """Claim `key` for this request, or return the stored row of the request that did.

        The claim is a row inserted in the write's own transaction: a concurrent retry waits
        on it and then finds the stored result; a rolled-back first try frees the key.
        """
        digest = hashlib.sha256(msgspec.json.encode(
            msgspec.structs.replace(arguments, idempotency_key=None))).hexdigest()
        identity = {"caller": context.caller.name, "action": action.name, "key": key}
        if await context.queries.idempotency.claim_key(connection, payload_sha256=digest, **identity):
            return None
        stored = await context.queries.idempotency.stored_result(connection, **identity)
        assert stored is not None  # a key whose claim failed belongs to a committed write
        if stored["payload_sha256"] != digest:
            raise Conflict("this idempotency_key was used with a different payload",
                           {"field": "idempotency_key"})
        return stored


async def _encoded(answer: Awaitable[Any]) -> Any:
    """A cached action's answer, encoded once for every request it will answer."""
    result = await answer
    return result if isinstance(result, Paged) else Encoded(encode(result))


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
        return _unavailable(error)
    return error


def _unavailable(error: BaseException) -> Unavailable:
    if isinstance(error, asyncio.TimeoutError):
        return Unavailable("the database did not answer in time (all pool connections busy, or a "
                           "slow statement), try again", {"reason": "TimeoutError"})
    return Unavailable("the database is not reachable, try again", {"reason": type(error).__name__})
