"""Every resource wsd answers, one module each; `ALL_TABLES` is what the dispatcher serves."""

from wsd.handlers import conversations, dashboard, leads, meetings, requirements, trail

ALL_TABLES = [conversations.ACTIONS, dashboard.ACTIONS, leads.ACTIONS, meetings.ACTIONS,
              requirements.ACTIONS, trail.ACTIONS]

__all__ = ["ALL_TABLES"]
