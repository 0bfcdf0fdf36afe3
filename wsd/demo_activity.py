"""A simulated AI agent that keeps the demo database moving, written straight into PostgreSQL.

The real agent talks to prospects and writes leads, messages and step moves into PostgreSQL
itself, not through wsd. This module does the same at a realistic pace so that a dashboard
subscribed to live queries visibly changes on its own — and exercises exactly the path
(writes made outside wsd) that live queries must catch.

What happens, one transaction per event:

* a prospect arrives: user + conversation + lead at `start` (history row) + first message;
* a prospect writes in an active conversation;
* the agent replies a few seconds after each prospect message (so reply-delay figures
  move) and often moves the lead one step forward (history source `agent`), writing what
  the step needs: consent, BANT answers, requirements with features and integrations, a
  meeting in a free slot of the working week;
* occasionally a salesperson takes a conversation over (agent switched off, recorded in
  agent_status_changes and announced on `wsd_agent_status`, as update_agent_status does).

Time is simulated: events are laid out on a clock measured in "seconds at 1 event/s" and
played at `events_per_second`, so a higher rate compresses time and the same seed gives the
same sequence of events whatever the rate (and, on the same database, the same rows).

Example:
    >>> await run_demo_activity(lambda: database.connect("wsd-demo-activity"), config)
"""

from __future__ import annotations

import asyncio
import datetime as dt
import heapq
import random
import uuid
from dataclasses import dataclass, field
from typing import Awaitable, Callable

import asyncpg
import structlog

from wsd import demo
from wsd.clock import local_today, utc_now
from wsd.config import Config
from wsd.database import load_queries
from wsd.queries import Queries, one_row
from wsd.slots import free_slots
from wsd.steps import STEPS

__all__ = ["run_demo_activity", "DEFAULT_EVENTS_PER_SECOND"]

log = structlog.get_logger("wsd.demo_activity")

DEFAULT_EVENTS_PER_SECOND = 1.0
# A prospect acts every 0.8–2.8 simulated seconds; almost each action earns an agent reply, so
# prospect actions plus replies come to about one event per simulated second.
PROSPECT_GAP = (0.8, 2.8)
# Agent reply delay in simulated seconds: log-normal (median ≈ 3.3 s) with a clipped tail.
REPLY_DELAY_MU, REPLY_DELAY_SIGMA, REPLY_DELAY_BOUNDS = 1.2, 0.5, (1.0, 20.0)
# What a prospect action is: a new lead, a hand-off, otherwise a message in a conversation.
NEW_LEAD_SHARE, HANDOFF_SHARE = 0.22, 0.03
# Prospects are drawn from this many most recently active leads, favouring the most recent
# (so some leads go all the way to `completed` while older ones drift into "abandoned").
ACTIVE_WINDOW = 30
# Chance that an agent reply also moves the lead one step; past `meeting` it is smaller
# (the meeting has to happen first).
ADVANCE_CHANCE, COMPLETE_CHANCE = 0.6, 0.25
MEETING_MINUTES = (30, 45, 60)
# Meetings are booked within this many local days from today.
BOOKING_DAYS = 14
# A pace more than this many seconds behind (after a reconnect, a slow database) is dropped
# instead of caught up with a burst.
MAX_LAG_SECONDS = 2.0
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 10.0

USER_LINES = {
    "start": ("Hola, quiero información sobre una app para mi empresa.",
              "Buenas, ¿desarrollan aplicaciones a medida?"),
    "consent": ("Sí, acepto el tratamiento de mis datos.", "De acuerdo, acepto la política."),
    "personal_data": ("Te paso mis datos de contacto.", "Mi email es el que usé para escribir."),
    "bant": ("Mi presupuesto ronda los 20.000 USD.", "Yo tomo la decisión final.",
             "Necesitamos lanzar antes de fin de trimestre."),
    "requirements": ("Queremos integrar pagos con Stripe.", "Lo imprescindible es el panel de administración.",
                     "¿Cuánto tardaría el desarrollo?"),
    "meeting": ("Perfecto, nos vemos en la reunión.", "¿Puedo invitar a mi socio a la llamada?"),
}
AGENT_ASKS = {
    "consent": "Antes de seguir, ¿aceptas nuestra política de privacidad?",
    "personal_data": "¿Me compartes tu nombre, email y empresa?",
    "bant": "¿Qué presupuesto aproximado manejan y quién decide?",
    "requirements": "Anoté las funcionalidades e integraciones que necesitas.",
    "meeting": "Te agendé una reunión con el equipo; te envié la invitación por correo.",
    "completed": "¡Gracias por la reunión! Te enviaremos la propuesta en breve.",
}
AGENT_FILLERS = ("¡Entendido! Cuéntame un poco más.", "Perfecto, lo tengo en cuenta.",
                 "Buena pregunta: depende del alcance, lo vemos en detalle.",
                 "¡Hola! Soy el asistente de ventas. ¿En qué proyecto estás pensando?")
SOURCE = "agent"


@dataclass(order=True)
class _Event:
    """One thing to do at simulated time `at`; `seq` keeps equal times in creation order."""
    at: float
    seq: int
    kind: str = field(compare=False)  # "prospect" or "reply"
    conversation_id: uuid.UUID | None = field(default=None, compare=False)


@dataclass
class _Outcome:
    """What one committed event asks of the agenda: replies to schedule, replies to drop."""
    reply_to: uuid.UUID | None = None
    handed_off: uuid.UUID | None = None
    kind: str = ""


class _Agenda:
    """The simulated clock: prospect actions at jittered intervals and the agent's pending
    replies, popped in time order. Kept in memory across reconnects so the sequence of
    events does not depend on when the connection drops."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self._heap: list[_Event] = []
        self._seq = 0
        self.awaiting_reply: set[uuid.UUID] = set()
        self._push(0.0, "prospect", None)

    def _push(self, at: float, kind: str, conversation_id: uuid.UUID | None) -> None:
        self._seq += 1
        heapq.heappush(self._heap, _Event(at, self._seq, kind, conversation_id))

    def pop(self) -> _Event:
        """The next event; replies to conversations handed off meanwhile are dropped."""
        while True:
            event = heapq.heappop(self._heap)
            if event.kind == "reply" and event.conversation_id not in self.awaiting_reply:
                continue
            return event

    def settle(self, event: _Event, outcome: _Outcome) -> None:
        """Books what follows an event that is over (committed, or skipped after an error;
        never one interrupted by a lost connection, which is run again): the next prospect
        action, and the agent's reply to a prospect message."""
        if event.kind == "prospect":
            self._push(event.at + self.rng.uniform(*PROSPECT_GAP), "prospect", None)
        else:
            self.awaiting_reply.discard(event.conversation_id)
        if outcome.handed_off is not None:
            self.awaiting_reply.discard(outcome.handed_off)
        if outcome.reply_to is not None and outcome.reply_to not in self.awaiting_reply:
            delay = min(max(self.rng.lognormvariate(REPLY_DELAY_MU, REPLY_DELAY_SIGMA),
                            REPLY_DELAY_BOUNDS[0]), REPLY_DELAY_BOUNDS[1])
            self.awaiting_reply.add(outcome.reply_to)
            self._push(event.at + delay, "reply", outcome.reply_to)


class _Pacer:
    """Plays simulated seconds at `rate` events per second of wall time."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._origin: float | None = None

    async def wait_for(self, at: float) -> None:
        now = asyncio.get_running_loop().time()
        if self._origin is None:
            self._origin = now - at / self.rate
        delay = self._origin + at / self.rate - now
        if delay < -MAX_LAG_SECONDS:
            self._origin -= delay  # re-anchor: this event is due now, the rest follow at pace
        elif delay > 0:
            await asyncio.sleep(delay)


class _Agent:
    """Writes one event's rows; every random choice comes from `rng`, so a seed and the
    database state fix what is written."""

    def __init__(self, config: Config, rng: random.Random, queries: Queries) -> None:
        self.config = config
        self.rng = rng
        self.q = queries

    async def apply(self, connection: asyncpg.Connection, event: _Event) -> _Outcome:
        """Runs the event in one transaction and says what follows from it."""
        async with connection.transaction():
            if event.kind == "prospect":
                return await self._prospect(connection)
            assert event.conversation_id is not None
            return await self._reply(connection, event.conversation_id)

    # Prospects -------------------------------------------------------------------------

    async def _prospect(self, connection: asyncpg.Connection) -> _Outcome:
        roll = self.rng.random()
        active = [row async for row in self.q.demo_activity.active_leads(
            connection, window_size=ACTIVE_WINDOW)]
        if roll < NEW_LEAD_SHARE or not active:
            return await self._new_lead(connection)
        if roll < NEW_LEAD_SHARE + HANDOFF_SHARE:
            return await self._hand_off(connection, self.rng.choice(active)["conversation_id"])
        # Squaring favours the most recently active: a conversation in full swing goes on.
        lead = active[int(len(active) * self.rng.random() ** 2)]
        line = self.rng.choice(USER_LINES.get(lead["current_step"], USER_LINES["start"]))
        await self.q.demo_activity.insert_message(
            connection, conversation_id=lead["conversation_id"], role="user", content=line)
        return _Outcome(reply_to=lead["conversation_id"], kind="message")

    async def _new_lead(self, connection: asyncpg.Connection) -> _Outcome:
        rng = self.rng
        first, last = rng.choice(demo.FIRST_NAMES), rng.choice(demo.LAST_NAMES)
        stem = rng.choice(demo.COMPANY_STEMS)
        company = f"{stem} {rng.choice(demo.COMPANY_KINDS)} {rng.choice(demo.COMPANY_SUFFIXES)}"
        local_part = f"{demo.email_part(first)}.{demo.email_part(last)}{rng.randrange(100, 10_000)}"
        email = f"{local_part}@{demo.email_part(stem)}.example"
        phone = f"+34 6{rng.randrange(10_000_000, 100_000_000)}"
        created = one_row(await self.q.demo_activity.new_lead(
            connection, full_name=f"{first} {last}", email=email, phone=phone, company=company))
        await self.q.leads.record_step_change(
            connection, lead_id=created["lead_id"], from_step=None, to_step="start", source=SOURCE)
        await self.q.demo_activity.insert_message(
            connection, conversation_id=created["conversation_id"], role="user",
            content=rng.choice(USER_LINES["start"]))
        return _Outcome(reply_to=created["conversation_id"], kind="new_lead")

    async def _hand_off(self, connection: asyncpg.Connection, conversation_id: uuid.UUID) -> _Outcome:
        """A salesperson takes over: the same statements wsd's update_agent_status runs (the
        switch named, row in agent_status_changes, pg_notify on wsd_agent_status), then their
        first words."""
        await self.q.conversations.name_switcher(connection, actor="demo-salesperson", actor_role=None,
                                                 reason="the prospect asked for a person")
        await self.q.conversations.update_agent_status(
            connection, conversation_id=conversation_id, enabled=False)
        await self.q.demo_activity.insert_message(
            connection, conversation_id=conversation_id, role="human",
            content=self.rng.choice(demo.HUMAN_LINES))
        return _Outcome(handed_off=conversation_id, kind="hand_off")

    # The agent ---------------------------------------------------------------------------

    async def _reply(self, connection: asyncpg.Connection, conversation_id: uuid.UUID) -> _Outcome:
        """The agent answers; often it also moves the lead one step forward."""
        conversation = await self.q.demo_activity.lock_conversation(
            connection, conversation_id=conversation_id)
        if conversation is None or not conversation["agent_enabled"] or not conversation["is_open"]:
            return _Outcome(kind="reply_skipped")  # deleted, handed off or closed meanwhile
        lead = await self.q.demo_activity.lock_lead_of_conversation(
            connection, conversation_id=conversation_id)
        moved_to = None
        if lead is not None and lead["current_step"] != "completed":
            moved_to = await self._maybe_advance(connection, lead)
        content = AGENT_ASKS[moved_to] if moved_to else self.rng.choice(AGENT_FILLERS)
        await self.q.demo_activity.insert_message(
            connection, conversation_id=conversation_id, role="agent", content=content)
        return _Outcome(kind=f"advance:{moved_to}" if moved_to else "reply")

    async def _maybe_advance(self, connection: asyncpg.Connection, lead: asyncpg.Record) -> str | None:
        """Moves the lead one step when the dice say so and the step's data can be written;
        returns the new step, or None when it stays."""
        current = lead["current_step"]
        target = STEPS[STEPS.index(current) + 1]
        chance = COMPLETE_CHANCE if target == "completed" else ADVANCE_CHANCE
        if self.rng.random() >= chance:
            return None
        if not await self._write_step_data(connection, lead, target):
            return None
        # History first (its trigger keeps furthest_step and entry times), then the lead.
        await self.q.leads.record_step_change(
            connection, lead_id=lead["lead_id"], from_step=current, to_step=target, source=SOURCE)
        await self.q.demo_activity.advance_lead(connection, lead_id=lead["lead_id"], new_step=target)
        return target

    async def _write_step_data(self, connection: asyncpg.Connection, lead: asyncpg.Record,
                               target: str) -> bool:
        """What the agent gathers on entering `target`; False when the lead cannot enter it."""
        if target == "bant":
            await self._bant(connection, lead["lead_id"])
        elif target == "requirements":
            await self._requirements(connection, lead["lead_id"])
        elif target == "meeting":
            return await self._meeting(connection, lead)
        return True

    async def _bant(self, connection: asyncpg.Connection, lead_id: uuid.UUID) -> None:
        rng = self.rng
        await self.q.demo_activity.insert_bant(
            connection, lead_id=lead_id, budget=rng.choice(demo.BUDGETS),
            authority=rng.choice(demo.AUTHORITIES), need=rng.choice(demo.NEEDS),
            timeline=rng.choice(demo.TIMELINES))

    async def _requirements(self, connection: asyncpg.Connection, lead_id: uuid.UUID) -> None:
        rng = self.rng
        app_type = rng.choice(demo.APP_TYPES)
        features = rng.sample(demo.FEATURES, rng.randint(1, 5))
        integrations = rng.sample(demo.INTEGRATIONS, rng.randint(1, 3))
        deadline = local_today(self.config.business.zone) + dt.timedelta(days=rng.randint(30, 240))
        requirements_id = await self.q.demo_activity.insert_requirements(
            connection, lead_id=lead_id, app_type=app_type, deadline=deadline)
        if requirements_id is None:
            return  # gathered on an earlier pass through the step
        for query, items in ((self.q.requirements.insert_features, features),
                             (self.q.requirements.insert_integrations, integrations)):
            _ = [row async for row in query(
                connection, requirements_id=requirements_id, names=[name for name, _ in items],
                descriptions=[description for _, description in items])]

    async def _meeting(self, connection: asyncpg.Connection, lead: asyncpg.Record) -> bool:
        """Books the lead into the first free slot from a random point of the coming working
        days, checked in SQL under the mailbox lock create_meeting takes, so neither wsd nor
        another simulator can book the same time. False when no slot is free or the lead has
        no email to invite."""
        # Draw first, whatever happens next, so the random stream does not depend on the clock.
        minutes, pick = self.rng.choice(MEETING_MINUTES), self.rng.random()
        if not lead["email"]:
            return False
        q = self.q
        mailbox = self.config.outlook.mailbox
        await q.meetings.lock_mailbox(connection, mailbox=mailbox)
        if await q.demo_activity.scheduled_meeting_of_lead(connection, lead_id=lead["lead_id"]):
            return True  # booked on an earlier pass through the step
        starts = _candidate_starts(self.config, minutes, pick)
        start = await q.demo_activity.first_free_slot(
            connection, mailbox=mailbox, starts=starts, minutes=minutes)
        if start is None:
            return False
        await q.meetings.insert_meeting(
            connection, lead_id=lead["lead_id"], user_id=lead["user_id"],
            subject=_subject(lead["full_name"], lead["company"]), start_time=start,
            end_time=start + dt.timedelta(minutes=minutes), attendee_email=lead["email"],
            mailbox=mailbox, sync_status="pending" if self.config.outlook.enabled else "disabled")
        return True


def _candidate_starts(config: Config, minutes: int, pick: float) -> list[dt.datetime]:
    """Every slot of the coming BOOKING_DAYS that the business rules allow (workdays,
    working hours, slot grid, minimum notice), rotated to begin at a point that `pick`
    chooses, nearer days being likelier."""
    business = config.business
    now = utc_now()
    today = local_today(business.zone, now)
    slots = [start for offset in range(BOOKING_DAYS)
             for start, _ in free_slots(today + dt.timedelta(days=offset), minutes, business, [], now)]
    if not slots:
        return []
    first = int(len(slots) * pick ** 2)
    return slots[first:] + slots[:first]


def _subject(full_name: str, company: str | None) -> str:
    subject = f"Reunión con {full_name}" + (f" ({company})" if company else "")
    return subject[:255]


# Connection loss -----------------------------------------------------------------------------

# Errors after which the connection cannot be trusted: the event is run again on a new one.
# InternalClientError ("cannot switch to state …; another operation is in progress") is what
# leaving a transaction raises when the server ended the connection in the middle of a query.
_LOST = (OSError, asyncio.TimeoutError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError,
         asyncpg.exceptions.AdminShutdownError, asyncpg.exceptions.CrashShutdownError,
         asyncpg.exceptions.CannotConnectNowError, asyncpg.exceptions.InternalClientError)

# Errors of a write that met a concurrent one (e.g. the agent moving a lead while a
# salesperson books its meeting through wsd): the event is skipped, the demo goes on.
_CONTENDED = (asyncpg.exceptions.DeadlockDetectedError, asyncpg.exceptions.SerializationError,
              asyncpg.exceptions.LockNotAvailableError)


class _Link:
    """The simulator's one connection: opened on demand, replaced (with a warning and a
    doubling backoff) when lost, so a database restart pauses the demo instead of ending it."""

    def __init__(self, connect: Callable[[], Awaitable[asyncpg.Connection]]) -> None:
        self._connect = connect
        self._connection: asyncpg.Connection | None = None
        self._delay = BACKOFF_FIRST

    async def get(self) -> asyncpg.Connection:
        if self._connection is not None and self._connection.is_closed():
            # Closed between events (asyncpg saw the server hang up): no error to catch.
            self._warn("connection closed by the server")
            self._connection = None
        if self._connection is None:
            self._connection = await self._connect()
        return self._connection

    def is_lost(self, error: BaseException) -> bool:
        return (isinstance(error, _LOST) or self._connection is None
                or self._connection.is_closed())

    async def lost(self, error: BaseException) -> None:
        """Drops the broken connection and waits before the next attempt."""
        self._warn(f"{type(error).__name__}: {error}")
        await self.close()
        await asyncio.sleep(self._delay)
        self._delay = min(self._delay * 2, BACKOFF_MAX)

    def worked(self) -> None:
        self._delay = BACKOFF_FIRST

    def _warn(self, error: str) -> None:
        log.warning("demo activity lost its database connection; reconnecting",
                    error=error, retry_in=self._delay)

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None or connection.is_closed():
            return
        try:
            async with asyncio.timeout(2):
                await connection.close()
        except BaseException:  # noqa: BLE001 - a broken connection is dropped either way
            connection.terminate()


async def _play(event: _Event, agent: _Agent, link: _Link, rng: random.Random) -> _Outcome:
    """Runs one event until it commits or fails for a reason other than the connection.

    After a lost connection the event is run again from the same random state, so a seeded
    run writes the same rows whether or not the connection dropped."""
    while True:
        state = rng.getstate()
        try:
            outcome = await agent.apply(await link.get(), event)
        except (asyncpg.PostgresError, *_LOST) as error:
            if link.is_lost(error):
                rng.setstate(state)
                await link.lost(error)
                continue
            if isinstance(error, _CONTENDED):
                # Lost a race with a wsd write on the same lead or mailbox: nothing is wrong.
                log.warning("demo event lost a race; skipped", kind=event.kind, error=str(error))
            else:
                log.error("demo event failed; skipped", kind=event.kind, error=str(error))
            return _Outcome(kind="failed")
        link.worked()
        return outcome


async def run_demo_activity(connect: Callable[[], Awaitable[asyncpg.Connection]], config: Config, *,
                            events_per_second: float = DEFAULT_EVENTS_PER_SECOND,
                            seed: int | None = None, stop_after: int | None = None) -> None:
    """Plays the simulated agent until cancelled (or after `stop_after` events).

    `connect` opens a new connection each time it is called (the integrator passes
    `lambda: database.connect("wsd-demo-activity")`). A lost connection is logged, waited
    out with backoff and the interrupted event is run again on a new one. Any other database
    error skips the event (logged): a demo must not die of one odd row written by someone
    else. The seed fixes every choice; None draws one from the system.
    """
    if events_per_second <= 0:
        raise ValueError("events_per_second must be positive")
    rng = random.Random(seed)
    agenda, agent, pacer = _Agenda(rng), _Agent(config, rng, load_queries()), _Pacer(events_per_second)
    link = _Link(connect)
    done = 0
    log.info("demo activity started", events_per_second=events_per_second, seed=seed,
             stop_after=stop_after)
    try:
        while stop_after is None or done < stop_after:
            event = agenda.pop()
            await pacer.wait_for(event.at)
            outcome = await _play(event, agent, link, rng)
            agenda.settle(event, outcome)
            done += 1
            log.debug("demo event", n=done, kind=outcome.kind)
    finally:
        await link.close()
    log.info("demo activity stopped", events=done)
