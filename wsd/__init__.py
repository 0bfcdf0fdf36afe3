"""wsd: the WebSocket daemon behind the lead-qualification admin dashboard."""

__version__ = "0.1.0"
