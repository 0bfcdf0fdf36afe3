"""Deterministic demo data: a realistic sales pipeline across every table, loaded with COPY.

The same `seed` gives the same people, companies, threads and funnel; times are laid out
backwards from the current hour so that "today", "active" and "abandoned" mean something
whenever the demo runs. One million leads load in a few minutes: rows are generated in
chunks and streamed with binary COPY, with triggers and FK checks off for the load when the
role may do that (the generator keeps the data consistent itself).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
import random
from uuid import UUID
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from asyncpg.pgproto.pgproto import UUID as PgUUID

from wsd import steps as lead_steps
from wsd.config import BusinessConfig
from wsd.slots import working_hours
from asyncpg.pool import PoolConnectionProxy

# A single connection or a pooled one: the seed runs in its transactions.
Connection = asyncpg.Connection | PoolConnectionProxy

__all__ = ["seed_demo", "seed_if_empty", "DEFAULT_LEADS", "DatabaseNotEmpty"]

DEFAULT_LEADS = 500
CHUNK_LEADS = 5_000

STEPS = lead_steps.STEPS
SECOND = dt.timedelta(seconds=1)
# Share of leads whose current step is each of STEPS: a funnel that narrows.
STEP_WEIGHTS = (24, 17, 15, 13, 12, 10, 9)
# Demo meetings keep the default working hours (Europe/Madrid, Monday–Friday 09:00–18:00).
BUSINESS = BusinessConfig()

FIRST_NAMES = ("Juan", "María", "Carlos", "Lucía", "Javier", "Ana", "Diego", "Sofía", "Miguel",
               "Laura", "Andrés", "Valentina", "Pablo", "Camila", "Alejandro", "Isabel", "Fernando",
               "Paula", "Ricardo", "Elena", "Sergio", "Daniela", "Raúl", "Gabriela", "Tomás",
               "Natalia", "Emily", "James", "Olivia", "Liam", "Noah", "Emma")
LAST_NAMES = ("Pérez", "García", "Martínez", "López", "González", "Rodríguez", "Fernández",
              "Sánchez", "Ramírez", "Torres", "Flores", "Rivera", "Gómez", "Díaz", "Morales",
              "Herrera", "Castro", "Ortiz", "Romero", "Navarro", "Smith", "Johnson", "Brown")
COMPANY_STEMS = ("Nova", "Andina", "Pacífico", "Atlas", "Cumbre", "Delta", "Horizonte", "Vértice",
                 "Solaris", "Brío", "Cóndor", "Mistral", "Orion", "Faro", "Lumen", "Tierra")
COMPANY_KINDS = ("Logística", "Retail", "Salud", "Finanzas", "Educación", "Seguros", "Foods",
                 "Tech", "Consultores", "Inmobiliaria", "Turismo", "Energía")
COMPANY_SUFFIXES = ("S.A.", "S.L.", "SpA", "S.A.S.", "Ltda.", "Inc.", "Group")
BUDGETS = ("<5000", "5000-10000", "10000-50000", "50000-100000", ">100000")
AUTHORITIES = ("decision_maker", "influencer", "evaluator", "end_user")
NEEDS = ("urgent", "important", "exploring")
TIMELINES = ("1_month", "3_months", "6_months", "12_months")
APP_TYPES = ("web_app", "mobile_app", "ecommerce", "saas_platform", "internal_tool", "landing_page")
FEATURES = (
    ("Sistema de autenticación", "Login con email y contraseña"),
    ("Push Notifications", "Notificaciones en tiempo real"),
    ("Chat en vivo", "Sistema de chat en tiempo real"),
    ("Pasarela de pagos", "Cobros con tarjeta y transferencias"),
    ("Panel de administración", "Gestión de usuarios y contenidos"),
    ("Reportes y analítica", "Gráficos y exportación a Excel"),
    ("Carrito de compras", "Compra de varios productos en un pedido"),
    ("Geolocalización", "Mapa y seguimiento de pedidos"),
    ("Multi-idioma", "Español, inglés y portugués"),
    ("Reservas y agenda", "Calendario de citas para clientes"),
    ("Modo offline", "Uso sin conexión y sincronización posterior"),
    ("Roles y permisos", "Accesos distintos por tipo de usuario"),
)
INTEGRATIONS = (
    ("PayPal", "Procesamiento de pagos"), ("Stripe", "Procesamiento de pagos"),
    ("Firebase", "Backend como servicio"), ("Google Maps", "Mapas y rutas"),
    ("Salesforce", "Sincronización del CRM"), ("HubSpot", "Marketing y CRM"),
    ("WhatsApp Business", "Mensajería con clientes"), ("Twilio", "SMS y verificación"),
    ("SAP", "ERP corporativo"), ("Mailchimp", "Campañas de email"),
    ("Shopify", "Catálogo y pedidos"), ("Mercado Pago", "Pagos en Latinoamérica"),
)
USER_LINES = ("Hola, quiero información sobre una app para mi empresa.",
              "Sí, acepto el tratamiento de mis datos.", "Mi presupuesto ronda los 20.000 USD.",
              "Necesitamos lanzar antes de fin de trimestre.", "Yo tomo la decisión final.",
              "¿Cuánto tardaría el desarrollo?", "Queremos integrar pagos con Stripe.",
              "¿Podemos agendar una llamada la próxima semana?", "Perfecto, gracias.")
AGENT_LINES = ("¡Hola! Soy el asistente de ventas. ¿En qué proyecto estás pensando?",
               "Antes de seguir, ¿aceptas nuestra política de privacidad?",
               "¿Me compartes tu nombre, email y empresa?",
               "¿Qué presupuesto aproximado manejan para el proyecto?",
               "¿Quién más participa en la decisión?",
               "¿Qué funcionalidades son imprescindibles para ti?",
               "Tengo disponibilidad el martes a las 10:00, ¿te viene bien?",
               "Listo, te envié la invitación por correo.")
HUMAN_LINES = ("Hola, soy del equipo comercial, sigo yo la conversación.",
               "Te llamo en unos minutos para cerrar los detalles.")


class DatabaseNotEmpty(Exception):
    """Demo data only goes into an empty database: it never mixes with real leads."""


@dataclass
class _Rows:
    """One chunk's rows per table, in COPY column order."""
    users: list[tuple[Any, ...]] = field(default_factory=list)
    conversations: list[tuple[Any, ...]] = field(default_factory=list)
    messages: list[tuple[Any, ...]] = field(default_factory=list)
    agent_status_changes: list[tuple[Any, ...]] = field(default_factory=list)
    lead_qualifications: list[tuple[Any, ...]] = field(default_factory=list)
    lead_step_entries: list[tuple[Any, ...]] = field(default_factory=list)
    lead_step_history: list[tuple[Any, ...]] = field(default_factory=list)
    bant_data: list[tuple[Any, ...]] = field(default_factory=list)
    requirements: list[tuple[Any, ...]] = field(default_factory=list)
    features: list[tuple[Any, ...]] = field(default_factory=list)
    integrations: list[tuple[Any, ...]] = field(default_factory=list)
    meetings: list[tuple[Any, ...]] = field(default_factory=list)


COLUMNS = {
    "users": ("id", "full_name", "email", "phone", "company", "created_at"),
    "conversations": ("id", "user_id", "agent_enabled", "status", "created_at", "updated_at",
                      "last_message_at", "first_agent_message_at"),
    "messages": ("id", "conversation_id", "role", "content", "created_at", "response_seconds"),
    "agent_status_changes": ("conversation_id", "enabled", "changed_at"),
    "lead_qualifications": ("id", "user_id", "conversation_id", "current_step", "consent",
                            "created_at", "updated_at", "completed_at", "furthest_step",
                            "last_activity_at", "agent_handled"),
    "lead_step_entries": ("lead_id", "step", "entered_at", "hours_from_previous"),
    "lead_step_history": ("lead_id", "from_step", "to_step", "source", "changed_at"),
    "bant_data": ("id", "lead_id", "budget", "authority", "need", "timeline", "created_at",
                  "updated_at"),
    "requirements": ("id", "lead_id", "app_type", "deadline", "created_at", "updated_at"),
    "features": ("id", "requirements_id", "name", "description", "created_at"),
    "integrations": ("id", "requirements_id", "name", "description", "created_at"),
    "meetings": ("id", "lead_id", "user_id", "subject", "start_time", "end_time",
                 "attendee_email", "status", "sync_status", "created_at", "updated_at",
                 "lead_agent_handled"),
}


def email_part(text: str) -> str:
    """A name or company as part of a demo address: lower case, unaccented, no spaces or dots."""
    return text.lower().translate(str.maketrans("áéíóúñü", "aeiounu")).replace(" ", "").replace(".", "")


class _Generator:
    def __init__(self, seed: int | str, anchor: dt.datetime) -> None:
        self.rng = random.Random(seed)
        self.anchor = anchor

    def uuid(self) -> PgUUID:
        # asyncpg's own UUID type: built from 16 random bytes in C, five times faster than
        # UUID, and COPY sends it without conversion.
        return PgUUID(self.rng.randbytes(16))

    def lead(self, index: int, rows: _Rows) -> None:
        rng, anchor = self.rng, self.anchor
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        company = (f"{rng.choice(COMPANY_STEMS)} {rng.choice(COMPANY_KINDS)} "
                   f"{rng.choice(COMPANY_SUFFIXES)}")
        created = anchor - dt.timedelta(days=rng.uniform(0, 180) ** 1.15 / 180 ** 0.15)
        user_id, conversation_id, lead_id = self.uuid(), self.uuid(), self.uuid()
        email = f"{email_part(first)}.{email_part(last)}{index}@{email_part(company.split()[0])}.example"
        phone = f"+34 6{rng.randrange(10_000_000, 99_999_999)}"
        rows.users.append((user_id, f"{first} {last}", email, phone, company, created))

        final = rng.choices(range(len(STEPS)), weights=STEP_WEIGHTS)[0]
        # A few leads were moved back by a salesperson: they reached further than they are now.
        reached = min(final + 1, len(STEPS) - 2) if rng.random() < 0.02 and final < 5 else final
        step_times, meeting_time = self.steps(lead_id, created, reached, final, rows)
        at = step_times[-1]
        if len(step_times) - 1 < reached:
            reached = final = len(step_times) - 1
        if reached != final:
            next_at = at + dt.timedelta(hours=rng.uniform(1, 48))
            if next_at < anchor:
                at = next_at
                rows.lead_step_history.append((lead_id, STEPS[reached], STEPS[final], "manual", at))
            else:
                final = reached
        updated = at
        completed_at = at if STEPS[final] == "completed" else None
        last_message, agent_handled = self.conversation(conversation_id, user_id, created, updated, rows)
        rows.lead_qualifications.append((lead_id, user_id, conversation_id, STEPS[final],
                                         reached >= 1, created, updated, completed_at,
                                         STEPS[reached], max(updated, last_message), agent_handled))
        # hours_from_previous as step_hours() computes it (seconds as a float, then / 3600),
        # so the load needs no rewrite of a million rows afterwards.
        rows.lead_step_entries.extend(
            (lead_id, STEPS[step], entered,
             (entered - step_times[step - 1]) / SECOND / 3600 if step else None)
            for step, entered in enumerate(step_times))
        if reached >= 3:
            rows.bant_data.append((self.uuid(), lead_id, rng.choice(BUDGETS),
                                   rng.choice(AUTHORITIES), rng.choice(NEEDS),
                                   rng.choice(TIMELINES), step_times[3], step_times[3]))
        if reached >= 4:
            self.requirements(lead_id, step_times[4], rows)
        if meeting_time is not None:
            self.meeting(lead_id, user_id, email, first, company, step_times[5], meeting_time,
                         agent_handled, rows)

    def steps(self, lead_id: UUID, created: dt.datetime, reached: int, final: int,
              rows: _Rows) -> tuple[list[dt.datetime], tuple[dt.datetime, dt.datetime] | None]:
        """Writes the lead's way up to `reached` (cut short at the anchor); returns when it
        entered each step and its meeting's time, if it got one."""
        rng, at = self.rng, created
        step_times = [created]
        rows.lead_step_history.append((lead_id, None, "start", "agent", created))
        meeting_time: tuple[dt.datetime, dt.datetime] | None = None
        for step in range(1, reached + 1):
            next_at = at + dt.timedelta(hours=rng.expovariate(1 / 20))
            if STEPS[step] == "completed" and meeting_time is not None:
                # A lead is completed after its meeting has taken place, never before.
                next_at = max(next_at, meeting_time[1] + dt.timedelta(hours=rng.uniform(1, 24)))
            if next_at >= self.anchor:
                break  # not that far yet: nothing is dated in the future or piled on the anchor
            at = next_at
            source = "meeting" if STEPS[step] == "meeting" else rng.choices(
                ("agent", "manual"), weights=(92, 8))[0]
            rows.lead_step_history.append((lead_id, STEPS[step - 1], STEPS[step], source, at))
            step_times.append(at)
            if STEPS[step] == "meeting":
                meeting_time = self.meeting_time(at, upcoming=final == STEPS.index("meeting"))
        return step_times, meeting_time

    def conversation(self, conversation_id: UUID, user_id: UUID, created: dt.datetime,
                     until: dt.datetime, rows: _Rows) -> tuple[dt.datetime, bool]:
        """Writes the thread; returns the time of its last message and whether the agent wrote."""
        rng = self.rng
        handed_off = rng.random() < 0.06
        at = previous_at = created
        first_agent_at = None
        for turn in range(rng.randint(2, 10)):
            delay = None
            if turn % 2:
                # The agent answers in seconds; a log-normal delay has the long tail real ones have.
                delay = rng.lognormvariate(1.8, 0.6)
                if at + dt.timedelta(seconds=delay) >= self.anchor:
                    break  # nothing is dated at or after the anchor (ties there broke reply times)
                at = at + dt.timedelta(seconds=delay)
                first_agent_at = first_agent_at or at
                role, content = "agent", AGENT_LINES[min(turn // 2, len(AGENT_LINES) - 1)]
            else:
                if turn:
                    next_at = at + dt.timedelta(minutes=rng.expovariate(1 / 30))
                    if next_at >= self.anchor:
                        break
                    at = next_at
                role, content = "user", USER_LINES[min(turn // 2, len(USER_LINES) - 1)]
            rows.messages.append((self.uuid(), conversation_id, role, content, at,
                                  None if delay is None else (at - previous_at).total_seconds()))
            previous_at = at
        handoff_at = at + dt.timedelta(minutes=rng.uniform(1, 60))
        handed_off = handed_off and handoff_at < self.anchor
        if handed_off:
            at = handoff_at
            rows.agent_status_changes.append((conversation_id, False, at))
            rows.messages.append((self.uuid(), conversation_id, "human", rng.choice(HUMAN_LINES), at, None))
        last = max(at, until) if rng.random() < 0.3 else at
        if last > at:
            rows.messages.append((self.uuid(), conversation_id, "user", USER_LINES[-1], last, None))
        status = "closed" if (self.anchor - last).days > 30 and rng.random() < 0.7 else "open"
        rows.conversations.append((conversation_id, user_id, not handed_off, status, created,
                                   max(last, created), last, first_agent_at))
        return last, first_agent_at is not None

    def requirements(self, lead_id: UUID, at: dt.datetime, rows: _Rows) -> None:
        rng = self.rng
        requirements_id = self.uuid()
        deadline = (at + dt.timedelta(days=rng.randint(30, 240))).date()
        rows.requirements.append((requirements_id, lead_id, rng.choice(APP_TYPES), deadline, at, at))
        for name, description in rng.sample(FEATURES, rng.randint(1, 5)):
            rows.features.append((self.uuid(), requirements_id, name, description, at))
        for name, description in rng.sample(INTEGRATIONS, rng.randint(0, 3)):
            rows.integrations.append((self.uuid(), requirements_id, name, description, at))

    def meeting_time(self, booked_at: dt.datetime, upcoming: bool) -> tuple[dt.datetime, dt.datetime]:
        """A time create_meeting would accept: on a workday, within working hours (the default
        business settings), on the half hour, a few days after booking; leads still at
        `meeting` mostly meet in the coming days."""
        rng = self.rng
        if upcoming and rng.random() >= 0.3:
            base = max(booked_at, self.anchor) + dt.timedelta(days=rng.randint(1, 14))
        else:
            base = booked_at + dt.timedelta(days=rng.randint(1, 7))
        day = base.astimezone(BUSINESS.zone).date()
        while (hours := working_hours(day, BUSINESS)) is None:
            day += dt.timedelta(days=1)
        opens, closes = hours
        length = dt.timedelta(minutes=rng.choice((30, 45, 60)))
        half_hours = int((closes - opens - length) / dt.timedelta(minutes=30))
        start = opens + dt.timedelta(minutes=30 * rng.randint(0, half_hours))
        return start, start + length

    def meeting(self, lead_id: UUID, user_id: UUID, email: str, first: str, company: str,
                booked_at: dt.datetime, time: tuple[dt.datetime, dt.datetime], agent_handled: bool,
                rows: _Rows) -> None:
        rng = self.rng
        start, end = time
        status = "cancelled" if rng.random() < 0.08 else (
            "completed" if end < self.anchor else "scheduled")
        rows.meetings.append((self.uuid(), lead_id, user_id, f"Reunión con {first} ({company})",
                              start, end, email, status, "disabled", booked_at, booked_at, agent_handled))



def _generate_chunk(seed: int, anchor: dt.datetime, start: int, stop: int) -> _Rows:
    """Leads start..stop-1. Each chunk has its own random stream (from the seed and its
    start), so chunks can be made in parallel and the data set stays the same."""
    generator = _Generator(f"{seed}:{start}", anchor)
    rows = _Rows()
    for index in range(start, stop):
        generator.lead(index, rows)
    return rows


async def seed_demo(connection: Connection, leads: int = DEFAULT_LEADS, seed: int = 1,
                    anchor: dt.datetime | None = None) -> int:
    """Fill an empty database with `leads` demo leads; returns how many were written.

    Raises:
        DatabaseNotEmpty: there are leads already.
    """
    if await connection.fetchval("SELECT EXISTS (SELECT 1 FROM lead_qualifications)"):
        raise DatabaseNotEmpty("the database already has leads; demo data goes only into an empty one")
    anchor = anchor or dt.datetime.now(dt.timezone.utc).replace(minute=0, second=0, microsecond=0)
    async with connection.transaction():
        try:
            async with connection.transaction():  # a savepoint: a refusal must not abort the load
                await connection.execute("SET LOCAL session_replication_role = replica")
        except asyncpg.InsufficientPrivilegeError:
            pass  # a non-superuser loads with triggers and FK checks on: slower, same result
        await connection.execute("SET LOCAL maintenance_work_mem = '256MB'")
        # Secondary indexes are built once after the load: far cheaper than row by row.
        rebuild = await connection.fetch(
            "SELECT i.indexname, i.indexdef FROM pg_indexes AS i "
            "WHERE i.schemaname = current_schema() AND i.tablename = ANY($1::text[]) "
            "AND NOT EXISTS (SELECT 1 FROM pg_constraint AS c WHERE c.conname = i.indexname)",
            list(COLUMNS))
        for index in rebuild:
            await connection.execute(f'DROP INDEX "{index["indexname"]}"')
        # Chunks are generated in a worker process (a thread would share the GIL with the
        # COPY encoding), two ahead, while PostgreSQL ingests the current one.
        loop = asyncio.get_running_loop()
        bounds = [(start, min(start + CHUNK_LEADS, leads)) for start in range(0, leads, CHUNK_LEADS)]
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as workers:
            pending = [loop.run_in_executor(workers, _generate_chunk, seed, anchor, *b) for b in bounds[:2]]
            for position in range(len(bounds)):
                rows = await pending[position]
                if position + 2 < len(bounds):
                    pending.append(loop.run_in_executor(workers, _generate_chunk, seed, anchor,
                                                        *bounds[position + 2]))
                for table, columns in COLUMNS.items():
                    records = getattr(rows, table)
                    if records:
                        await connection.copy_records_to_table(table, records=records, columns=columns)
        for index in rebuild:
            await connection.execute(index["indexdef"])
        # One mailbox cannot hold two scheduled meetings at once (create_meeting refuses it):
        # of overlapping ones, the earlier booked stays and the others are cancelled.
        await connection.execute(
            "UPDATE meetings AS m SET status = 'cancelled' WHERE m.status = 'scheduled' AND EXISTS ("
            " SELECT 1 FROM meetings AS o WHERE o.status = 'scheduled' AND o.mailbox = m.mailbox"
            " AND o.start_time < m.end_time AND o.end_time > m.start_time"
            " AND (o.created_at, o.id) < (m.created_at, m.id))")
        await connection.execute("SELECT recount_all()")  # kept counts and aggregates: their triggers were off
    # VACUUM sets the visibility map, so counts can use index-only scans from the start.
    await connection.execute("VACUUM ANALYZE")
    return leads


async def seed_if_empty(connection: Connection, leads: int, seed: int) -> bool:
    """Seed for `make run`: only a database without leads gets demo data."""
    try:
        await seed_demo(connection, leads=leads, seed=seed)
    except DatabaseNotEmpty:
        return False
    return True
