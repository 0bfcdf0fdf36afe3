"""The error codes wsd speaks, and the exceptions that carry them.

Every failure a client can see is one of `ErrorCode`; handlers raise the matching
`WsdError` subclass and the connection turns it into an error envelope in one place
(`wsd.protocol.error_reply`).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

__all__ = [
    "ErrorCode", "WsdError", "BadJson", "BadRequest", "UnknownAction", "InvalidPayload",
    "Unauthorized", "Forbidden", "NotFound", "Conflict", "RateLimited", "Unavailable",
    "UpstreamError", "InternalError",
]


class ErrorCode(StrEnum):
    BAD_JSON = "bad_json"
    BAD_REQUEST = "bad_request"
    UNKNOWN_ACTION = "unknown_action"
    INVALID_PAYLOAD = "invalid_payload"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"
    UPSTREAM_ERROR = "upstream_error"
    INTERNAL = "internal"


class WsdError(Exception):
    """A failure with a stable code, a human message and optional machine-readable details."""

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class BadJson(WsdError):
    code = ErrorCode.BAD_JSON


class BadRequest(WsdError):
    """A frame that is JSON but not a request envelope; carries the id when one was readable."""

    code = ErrorCode.BAD_REQUEST

    def __init__(self, message: str, details: Any = None,
                 request_id: str | int | float | None = None) -> None:
        super().__init__(message, details)
        self.request_id = request_id


class UnknownAction(WsdError):
    code = ErrorCode.UNKNOWN_ACTION


class InvalidPayload(WsdError):
    code = ErrorCode.INVALID_PAYLOAD


class Unauthorized(WsdError):
    code = ErrorCode.UNAUTHORIZED


class Forbidden(WsdError):
    code = ErrorCode.FORBIDDEN


class NotFound(WsdError):
    code = ErrorCode.NOT_FOUND


class Conflict(WsdError):
    code = ErrorCode.CONFLICT


class RateLimited(WsdError):
    code = ErrorCode.RATE_LIMITED


class Unavailable(WsdError):
    code = ErrorCode.UNAVAILABLE


class UpstreamError(WsdError):
    code = ErrorCode.UPSTREAM_ERROR


class InternalError(WsdError):
    code = ErrorCode.INTERNAL
