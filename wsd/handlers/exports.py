"""export: every list as CSV (wsd/export.py streams it; the server sends it in chunks).

Each export mirrors a list read: `export.leads` takes get_all_leads' payload (its filters
and search) and needs its role, and so on. `limit` and `cursor` are ignored: an export is
the whole list. The columns are the read's JSON rows flattened.
"""

from __future__ import annotations

from wsd.export import Export
from wsd.handlers import leads, meetings, trail

__all__ = ["EXPORTS"]


LEAD_COLUMNS = (
    "id", "user_id", "conversation_id", "agent_enabled", "current_step", "consent", "created_at",
    "updated_at", "completed_at", "user.full_name", "user.email", "user.phone", "user.company",
    "bant_data.budget", "bant_data.authority", "bant_data.need", "bant_data.timeline",
    "requirements.id", "requirements.app_type", "requirements.deadline")

EXPORTS = {export.name: export for export in [
    Export("leads", ("leads", "get_all_leads"), leads.all_leads_query, "lead", LEAD_COLUMNS),
    Export("abandoned_leads", ("leads", "get_abandoned_leads"), leads.abandoned_leads_query, "lead",
           (*LEAD_COLUMNS, "last_activity_at", "days_inactive")),
    Export("meetings", ("meetings", "get_all_meetings"), meetings.meetings_query, "meeting",
           ("id", "lead_id", "user_id", "subject", "start_time", "end_time", "attendee_email", "status",
            "outlook_event_id", "sync_status", "last_error", "last_synced_at", "created_at", "updated_at")),
    Export("trail", ("trail", "get_trail"), trail.trail_query, "entry",
           ("id", "at", "actor", "actor_role", "actor_name", "actor_email", "resource", "action", "lead_id", "ids", "payload",
            "outcome")),
]}
