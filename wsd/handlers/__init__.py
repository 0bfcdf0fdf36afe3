"""Every resource wsd answers, one module each; `ALL_TABLES` is what the dispatcher serves."""

from wsd.handlers import conversations, dashboard, leads, requirements

ALL_TABLES = [conversations.ACTIONS, dashboard.ACTIONS, leads.ACTIONS, requirements.ACTIONS]

__all__ = ["ALL_TABLES"]
