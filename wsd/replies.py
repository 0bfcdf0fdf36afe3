"""The shape of every reply's `data`, and of the messages wsd sends unasked, as types.

Handlers build their answers as dicts and JSON straight from PostgreSQL (the lead document
is passed through as text), so these Structs are never instantiated on the hot path: they
are what `wsd schema` turns into JSON Schema (`msgspec.json.schema`), and a test checks the
daemon's real answers against that schema. Every key is always present (a value may be
null), and no other key is sent: a reply that gains or loses a field fails that test until
its type here says so.

`REPLIES` maps each action ("resource.action") to its reply's `data` type.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

import msgspec

from wsd.steps import LeadStep
from wsd.topics import Topic

__all__ = ["REPLIES", "LoginReply", "Expiring", "Subscribed", "Unsubscribed", "ChangeHint", "AgentStatusEvent"]

# Every time wsd sends carries its offset (UTC, or the business zone's for slots): `tz=True`
# is what makes msgspec's schema say `format: date-time`.
Moment = Annotated[dt.datetime, msgspec.Meta(tz=True)]
# A key only some answers carry (the reporting-period ones): not required by the schema.
Unset = msgspec.UnsetType
UNSET = msgspec.UNSET


class Reply(msgspec.Struct, forbid_unknown_fields=True):
    """Base of the reply types: exactly these keys."""


class Compared(Reply, kw_only=True):
    """An aggregate that may carry, with `compare`, the previous period's figures and the
    change from them (absolute and relative)."""

    previous: dict[str, Any] | Unset = UNSET
    change: dict[str, Any] | Unset = UNSET


# -- leads ---------------------------------------------------------------------------------------

class LeadUser(Reply):
    full_name: str
    email: str | None
    phone: str | None
    company: str | None


class Bant(Reply):
    budget: str | None
    authority: str | None
    need: str | None
    timeline: str | None


class RequirementSummary(Reply):
    id: uuid.UUID
    app_type: str
    deadline: dt.date | None


class _LeadFields(Reply):
    id: uuid.UUID
    user_id: uuid.UUID
    conversation_id: uuid.UUID | None
    agent_enabled: bool | None  # its conversation's switch; null without a conversation
    current_step: LeadStep
    consent: bool
    created_at: Moment
    updated_at: Moment
    completed_at: Moment | None
    user: LeadUser
    bant_data: Bant | None


class Lead(_LeadFields):
    """A lead as lists show it."""

    requirements: RequirementSummary | None


class AbandonedLead(Lead):
    last_activity_at: Moment
    days_inactive: int


class PipelineLead(Reply):
    id: uuid.UUID
    user_id: uuid.UUID
    full_name: str
    company: str | None
    email: str | None
    consent: bool
    agent_enabled: bool | None
    created_at: Moment
    updated_at: Moment


class PipelineStep(Reply):
    """A board column: the leads at the step now, and the 20 most recently updated (with a
    period: of the leads created in it, the 20 newest, and `filters`)."""

    step: LeadStep
    count: int
    leads: list[PipelineLead]
    filters: dict[str, Any] | Unset = UNSET


class ConversionStat(Reply):
    from_step: LeadStep
    to_step: LeadStep
    reached_from: int
    reached_to: int
    rate: float
    median_hours: float | None
    filters: dict[str, Any] | Unset = UNSET  # with a period


class PeriodConversionStats(Compared):
    period: PeriodSpan
    pairs: list[ConversionStat]


class PeriodPipeline(Compared):
    period: PeriodSpan
    steps: list[PipelineStep]


class StepTime(Reply):
    """Leads at a step with one agent switch: count, percentiles of hours in step, stalled."""

    leads: int
    median_hours: float | None
    p90_hours: float | None
    stalled: int
    filters: dict[str, Any]


class StepDuration(Reply):
    step: LeadStep
    stalled_after_hours: float | None
    leads: int
    stalled: int
    filters: dict[str, Any]
    agent_on: StepTime
    agent_off: StepTime


# -- requirements --------------------------------------------------------------------------------

class Item(Reply):
    """A feature or an integration."""

    id: uuid.UUID
    name: str
    description: str


class Requirement(Reply):
    id: uuid.UUID
    lead_id: uuid.UUID
    app_type: str
    deadline: dt.date | None
    created_at: Moment
    updated_at: Moment
    features: list[Item]
    integrations: list[Item]


class PopularItem(Reply):
    name: str
    count: int
    share: float
    filters: dict[str, Any] | Unset = UNSET  # with a period


class PeriodPopular(Compared):
    period: PeriodSpan
    items: list[PopularItem]


# -- meetings ------------------------------------------------------------------------------------

class Meeting(Reply):
    id: uuid.UUID
    lead_id: uuid.UUID
    user_id: uuid.UUID
    subject: str
    start_time: Moment
    end_time: Moment
    attendee_email: str
    status: Literal["scheduled", "cancelled", "completed"]
    outlook_event_id: str | None
    sync_status: Literal["synced", "pending", "failed", "disabled"]
    last_error: str | None
    last_synced_at: Moment | None
    created_at: Moment
    updated_at: Moment


class Slot(Reply):
    start: Moment
    end: Moment


class Slots(Reply):
    date: dt.date
    duration: int
    timezone: str
    slots: list[Slot]
    outlook_checked: bool | None  # null while Outlook is disabled
    warning: str | None


class SyncResult(Reply):
    created: int
    updated: int
    cancelled: int
    unchanged: int
    pushed: int
    full_resync: bool


# -- the lead's whole document -------------------------------------------------------------------

class Conversation(Reply):
    id: uuid.UUID
    agent_enabled: bool
    status: Literal["open", "closed"]
    message_count: int
    last_message_at: Moment | None


class StepChange(Reply):
    from_step: LeadStep | None  # null on the lead's creation
    to_step: LeadStep
    source: Literal["agent", "manual", "meeting"]
    changed_at: Moment


class LeadTrailEntry(Reply):
    """A trail entry on a lead's document (the lead is the document's)."""

    at: Moment
    actor: str
    actor_role: str
    actor_name: str | None   # a signed-in person's name (null for an API token)
    resource: str
    action: str
    ids: dict[str, Any]
    payload: dict[str, Any]
    outcome: str


class LeadDocument(_LeadFields):
    """One lead with its conversation, requirements, meetings and step history, and for an
    admin its latest 50 trail entries, newest first (null for a viewer)."""

    requirements: Requirement | None
    conversation: Conversation | None
    meetings: list[Meeting]
    step_history: list[StepChange]
    trail: list[LeadTrailEntry] | None


# -- conversations -------------------------------------------------------------------------------

class AgentStatus(Reply):
    id: uuid.UUID
    agent_enabled: bool
    updated_at: Moment


class AgentSwitch(Reply):
    """One switch of the agent: who (a token's name, or what a writer straight into
    PostgreSQL set as wsd.actor, `agent` by default), when, why."""

    at: Moment
    enabled: bool
    actor: str
    actor_role: str | None
    reason: str | None


# -- trail ---------------------------------------------------------------------------------------

class TrailEntry(Reply):
    id: int
    at: Moment
    actor: str
    actor_role: str
    actor_name: str | None   # a signed-in person's name and email, from the provider's token
    actor_email: str | None  # (null for an API token)
    resource: str
    action: str
    lead_id: uuid.UUID | None
    ids: dict[str, Any]
    payload: dict[str, Any]
    outcome: str


# -- dashboard -----------------------------------------------------------------------------------

# -- reporting periods (docs/protocol.md, "Reporting periods") -----------------------------------
# With `period` the aggregates add these keys; `previous` and `change` come with `compare`.
# `filters` maps a count's name to the get_all_leads filter of its leads; `change` holds
# {absolute, relative} for each number of the answer, in its shape.

class PeriodSpan(Reply):
    from_: dt.date = msgspec.field(name="from")
    to: dt.date
    since: Moment
    until: Moment


class InPeriod(Reply):
    new_leads: int
    messages: int
    step_changes: int
    meetings_created: int
    agent_toggles: int


class DashboardStats(Compared):
    total_users: int
    active_conversations: int
    meetings_today: int
    leads_by_step: dict[LeadStep, int]
    period: PeriodSpan | Unset = UNSET
    in_period: InPeriod | Unset = UNSET
    filters: dict[str, Any] | Unset = UNSET


class PeriodFunnelStep(Reply):
    """`reached` (cohort) or `entered` (activity)."""

    step: LeadStep
    rate_from_previous: float
    rate_from_start: float
    filters: dict[str, Any]
    reached: int | Unset = UNSET
    entered: int | Unset = UNSET


class PeriodFunnel(Compared):
    mode: Literal["cohort", "activity"]
    period: PeriodSpan
    steps: list[PeriodFunnelStep]


class FunnelStep(Reply):
    step: LeadStep
    reached: int
    rate_from_previous: float
    rate_from_start: float


class Bucket(Reply):
    """`hour` without a period; `start` (of the hour, day, week or month) with one."""

    new_leads: int
    messages: int
    step_changes: int
    meetings_created: int
    agent_toggles: int
    hour: Moment | Unset = UNSET
    start: Moment | Unset = UNSET


class RecentEvent(Reply):
    at: Moment
    kind: Literal["new_lead", "message", "step_change", "meeting_created", "agent_toggle"]
    ids: dict[str, Any]


class Timeline(Compared):
    buckets: list[Bucket]
    recent: list[RecentEvent]
    granularity: Literal["hour", "day", "week", "month"] | Unset = UNSET
    period: PeriodSpan | Unset = UNSET


class ResponseTimes(Reply):
    count: int
    average: float | None
    median: float | None
    p90: float | None


class AgentPeriod(Reply, kw_only=True):
    period: PeriodSpan | Unset = UNSET  # on `previous` of a period answer
    since: Moment
    until: Moment
    conversations_handled: int
    handoffs: int
    leads_advanced: int
    meetings_booked: int
    agent_messages: int
    first_response_seconds: ResponseTimes
    handled_leads: int
    completion_rate: float


class FirstHumanMessage(Reply):
    median: float | None
    p90: float | None


class TakeoverFigures(Reply, kw_only=True):
    period: PeriodSpan | Unset = UNSET  # on `previous` of a period answer
    since: Moment
    until: Moment
    handoffs: int
    answered: int
    unanswered_now: int
    switched_back: int
    conversations_human_wrote: int
    first_human_message_seconds: FirstHumanMessage


class HumanTakeover(TakeoverFigures, kw_only=True):
    """`days` without a period; with one, `period`, and `previous` and `change` with `compare`."""

    days: int | Unset = UNSET
    previous: TakeoverFigures | Unset = UNSET
    change: dict[str, Any] | Unset = UNSET


class AgentReport(Reply):
    """`days` and `previous` always without a period; with one, `period`, and `previous` and
    `change` with `compare`."""

    current: AgentPeriod
    days: int | Unset = UNSET
    previous: AgentPeriod | Unset = UNSET
    period: PeriodSpan | Unset = UNSET
    change: dict[str, Any] | Unset = UNSET


class PoolFigures(Reply):
    size: int
    idle: int
    max: int


class CacheFigures(Reply):
    hits: int
    joined: int
    computed: int
    invalidations: int


class LiveFigures(Reply):
    queries: int
    subscriptions: int
    reruns: int
    reruns_delayed: int
    updates_sent: int


class OutlookState(Reply):
    window_start: Moment | None
    window_end: Moment | None
    last_success_at: Moment | None
    last_attempt_at: Moment | None
    last_error: str | None
    pending_meetings: int
    failed_meetings: int


class RealTimeMetrics(Reply):
    instance: str
    connections: int
    people: int   # distinct people signed in with OpenID Connect on this instance
    requests_last_minute: int
    requests_per_second: float
    p50_ms: float | None  # null with no request in the last minute
    p95_ms: float | None
    pool: PoolFigures
    uptime_seconds: float
    cache: CacheFigures
    slow_clients_dropped: int
    live: LiveFigures
    messages_last_5_minutes: int
    new_leads_last_5_minutes: int
    outlook: OutlookState | None  # null while Outlook is disabled


# -- auth, live queries and events ---------------------------------------------------------------

class SignedInPerson(Reply):
    """Who a provider's token names (`auth.login` with `id_token`)."""

    provider: str
    subject: str
    name: str
    email: str | None


class LoginReply(Reply, omit_defaults=True):
    """`name` is an API token's name, or "<provider>:<subject>" for a person, who also gets
    `person` and `expires_at` (the token's exp: refresh before it with `auth.refresh`)."""

    name: str
    role: Literal["viewer", "admin"]
    person: SignedInPerson | None = None
    expires_at: Moment | None = None


class Expiring(Reply):
    """The `auth.expiring` event: the connection's token expires at `expires_at`; without an
    `auth.refresh` it is closed with 4401 then (plus `oidc.leeway_seconds`)."""

    expires_at: Moment
    seconds_left: int


class Subscribed(Reply, omit_defaults=True):
    """`data` is the subscribed action's answer, as a direct call's `data`."""

    subscription: str
    data: Any
    next_cursor: str | None = None  # a paged action's, beside `data`


class Unsubscribed(Reply):
    subscription: str


class HintsSet(Reply):
    """live.hints: whether this connection now gets `changes` events."""

    hints: bool


class ChangeHint(Reply):
    """`changes` event: a topic changed (`*`: anything may have, after the listener reconnected)."""

    topic: Topic | Literal["*"]


class AgentStatusEvent(Reply):
    """`agent_status` event: the AI agent was switched in a conversation."""

    conversation_id: uuid.UUID
    enabled: bool


REPLIES: dict[str, Any] = {
    "conversations.update_agent_status": AgentStatus,
    "conversations.get_agent_history": list[AgentSwitch],
    "trail.get_trail": list[TrailEntry],
    "dashboard.get_human_takeover": HumanTakeover,
    "dashboard.get_dashboard_stats": DashboardStats,
    "dashboard.get_conversion_funnel": list[FunnelStep] | PeriodFunnel,
    "dashboard.get_activity_timeline": Timeline,
    "dashboard.get_agent_performance": AgentReport,
    "dashboard.get_real_time_metrics": RealTimeMetrics,
    "leads.get_all_leads": list[Lead],
    "leads.get_lead_pipeline": list[PipelineStep] | PeriodPipeline,
    "leads.get_lead_with_complete_data": LeadDocument,
    "leads.update_lead_step": Lead,
    "leads.get_conversion_stats": list[ConversionStat] | PeriodConversionStats,
    "leads.get_step_durations": list[StepDuration],
    "leads.get_abandoned_leads": list[AbandonedLead],
    "meetings.get_all_meetings": list[Meeting],
    "meetings.get_calendar_view": dict[dt.date, list[Meeting]],
    "meetings.create_meeting": Meeting,
    "meetings.update_meeting": Meeting,
    "meetings.cancel_meeting": Meeting,
    "meetings.get_available_slots": Slots,
    "meetings.sync_outlook_calendar": SyncResult,
    "requirements.get_requirements_by_lead": Requirement | None,
    "requirements.create_requirement_package": Requirement,
    "requirements.update_requirements": Requirement,
    "requirements.add_feature": Item,
    "requirements.add_integration": Item,
    "requirements.get_popular_features": list[PopularItem] | PeriodPopular,
    "requirements.get_popular_integrations": list[PopularItem] | PeriodPopular,
}
