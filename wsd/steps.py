"""The 7 qualification steps, in funnel order (the `lead_step` enum of the schema)."""

from typing import Literal, get_args

LeadStep = Literal["start", "consent", "personal_data", "bant", "requirements", "meeting", "completed"]
STEPS: tuple[str, ...] = get_args(LeadStep)

__all__ = ["LeadStep", "STEPS"]
