"""Declaring actions: what a handler module writes to offer an action — its `Payload` type,
`read(...)` or `write(...)` (role, topics, caching, transaction) gathered in an
`ActionTable` — and what its handler is given (`Context`, `Caller`) and may return (`Paged`).

Running them is `wsd.dispatcher.Dispatcher`'s job; nothing here does I/O.

Example:
    >>> table = ActionTable("conversations", [
    ...     write("update_agent_status", update_agent_status, UpdateAgentStatus,
    ...           changes=["conversations"])])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Awaitable, Callable, ClassVar, Iterable, Literal

import asyncpg
import msgspec

from wsd.runtime import Runtime
from wsd.topics import Topic

if TYPE_CHECKING:
    from wsd.config import Config
    from wsd.queries import Executor, Queries

__all__ = ["Action", "ActionTable", "AfterCommit", "Caller", "Context", "Handler", "IdempotencyKey",
           "NoPayload", "Paged", "Payload", "Person", "Role", "ROLE_RANK", "read", "write"]

Role = Literal["viewer", "admin"]
# Who may do more: an admin may call every viewer action.
ROLE_RANK: dict[str, int] = {"viewer": 0, "admin": 1}


class Payload(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of every action's payload type: unknown fields are an `invalid_payload`.

    The type's docstring is its JSON Schema's description: it names the rules the type
    checks that JSON Schema cannot say (they compare two fields, or need the configuration).
    """

    # JSON Schema keywords for rules over the whole payload, merged into the type's schema.
    schema_rules: ClassVar[dict[str, Any]] = {}


class NoPayload(Payload):
    """For actions that take no parameters."""


# The optional field of creating actions' payloads. A client that lost a reply (a dropped
# connection, `unavailable` with outcome unknown) sends the same request again with the same
# key and gets the first result back instead of a twin or a `conflict`. Keys are per token
# and action, and kept a day.
IdempotencyKey = Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None


@dataclass(frozen=True, slots=True)
class Person:
    """A person signed in with an OpenID provider's token (`wsd.oidc`): who, from its claims,
    and until when (`expires_at`, the token's `exp` in Unix seconds)."""
    provider: str
    subject: str
    name: str
    email: str | None
    expires_at: float


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent a request: the token's name (for logs, limits and the trail) and its role
    (for permissions); for a signed-in person also `person`, and `name` is
    "<provider>:<subject>" (stable, unlike a display name or an email)."""
    name: str
    role: Role
    person: Person | None = None

    def trail_actor(self) -> dict[str, str | None]:
        """Who a trail entry names: name and role, and for a person the name and email the
        provider's token gave (migration 0018; NULL for an API token)."""
        person = self.person
        return {"actor": self.name, "actor_role": self.role,
                "actor_name": person.name if person else None,
                "actor_email": person.email if person else None}


@dataclass(slots=True)
class Context:
    """What a handler may use, each with its type. Built per request by the server; handlers
    never see sockets.

    Args:
        pool: the asyncpg pool; read handlers run their statements on it.
        queries: the named SQL queries, typed by the generated `wsd.queries.Queries`.
        config: the daemon's `Config`.
        caller: who sent the request.
        runtime: the daemon's figures and calendar sync (`wsd.runtime.Runtime`).
        transaction_connection: a write handler's connection, inside the transaction the
            dispatcher opened for it (see `connection`).
    """
    pool: asyncpg.Pool
    queries: Queries
    config: Config
    caller: Caller
    runtime: Runtime = field(default_factory=Runtime)
    transaction_connection: Executor | None = None

    @property
    def connection(self) -> Executor:
        """The write's connection, inside its transaction."""
        if self.transaction_connection is None:
            raise RuntimeError("only write actions run in a transaction")
        return self.transaction_connection


@dataclass(frozen=True, slots=True)
class Paged:
    """A page of a list: `data` plus the opaque cursor of the next page (None on the last),
    and for a filtered list the count of every item it matches (`total`, sent only then)."""
    data: list[Any]
    next_cursor: str | None
    total: int | None = None

    def extra(self) -> dict[str, Any]:
        """What goes beside `data` in the payload."""
        extra: dict[str, Any] = {"next_cursor": self.next_cursor}
        if self.total is not None:
            extra["total"] = self.total
        return extra


Handler = Callable[[Context, Any], Awaitable[Any]]
AfterCommit = Callable[[Context, Any], Awaitable[Any]]


# Compared and hashed by identity (one object per registered action): a cached request hashes
# its action in the cache key, which would otherwise hash every field each time.
@dataclass(frozen=True, slots=True, eq=False)
class Action:
    name: str
    handler: Handler
    payload_type: type[Payload] = NoPayload
    role: Role = "viewer"
    writes: bool = False   # a successful call invalidates cached answers
    cached: bool = False   # answers are shared through the dispatcher's cache
    transactional: bool = False   # the dispatcher runs the handler in a transaction
    then: AfterCommit | None = None   # turns the committed result into the reply
    topics: frozenset[Topic] = frozenset()   # a read: what its answer depends on
    changes: frozenset[Topic] = frozenset()  # a write: what it changes
    resource: str = ""   # set by the Dispatcher from the action's table


def read(name: str, handler: Handler, payload_type: type[Payload] = NoPayload, *,
         topics: Iterable[Topic], cached: bool = False, role: Role = "viewer") -> Action:
    """A read action, open to viewers unless `role` says admin.

    Args:
        topics: the topics its answer depends on: a change to any of them drops its cached
            answers and re-runs its live subscriptions. Empty: only the periodic re-run.
        cached: for aggregates many clients poll.
        role: "admin" for what only admins may read (the trail).
    """
    return Action(name, handler, payload_type, role=role, cached=cached, topics=frozenset(topics))


def write(name: str, handler: Handler, payload_type: type[Payload], *, changes: Iterable[Topic],
          then: AfterCommit | None = None, transactional: bool = True) -> Action:
    """A write action: admins only, run in one transaction that also announces the topics it
    changes; cached answers of those topics are dropped when it succeeds.

    Args:
        changes: the topics whose answers it changes (the tables' triggers raise them too).
        then: work after the commit (an Outlook push) that turns what the handler returned
            into the reply; it also runs when an idempotent retry replays a stored result.
        transactional: False for an action that changes nothing in PostgreSQL itself
            (it would hold a pooled connection idle while it talks to Outlook).
    """
    return Action(name, handler, payload_type, role="admin", writes=True,
                  transactional=transactional, then=then, changes=frozenset(changes))


@dataclass(frozen=True, slots=True)
class ActionTable:
    """The actions of one resource, as a handler module lists them."""
    resource: str
    actions: list[Action]
