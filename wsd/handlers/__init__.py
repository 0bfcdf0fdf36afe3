"""Every resource wsd answers, one module each; `ALL_TABLES` is what the dispatcher serves."""

from wsd.handlers import conversations

ALL_TABLES = [conversations.ACTIONS]

__all__ = ["ALL_TABLES"]
