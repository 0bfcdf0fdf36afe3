"""The wire protocol: parsing request envelopes and encoding every outgoing message.

Requests:  {"resource": str, "action": str, "id": str|number, "payload": object}
Success:   {"type": "success", "id": ..., "payload": {"data": ...}}
Error:     {"type": "error", "id": ..., "payload": {"code", "message", "details"}}
Event:     {"type": "event", "topic": str, "payload": ...}

This module does no I/O, so the protocol can be tested without a socket.
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from typing import Annotated, Any

import msgspec
import orjson

from wsd.errors import BadJson, BadRequest, WsdError

__all__ = ["Encoded", "Request", "parse_request", "encode", "success_reply", "error_reply", "event_message"]

RequestId = str | int | float | None
# orjson writes integers of at most 64 bits; a larger id is echoed as its exact digits.
_ORJSON_INTS = range(-(2**63), 2**64)
# The longest integer id, in characters of its JSON text (a minus sign counts): Python's own
# bound on turning digits into an int (`sys.get_int_max_str_digits`'s default), where msgspec
# stops. Longer ids are `bad_request` on `id`.
MAX_ID_DIGITS = 4300


NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]


class Request(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A well-formed envelope. Decoding a frame straight into it is the hot path's parse
    (one C call); anything it refuses is parsed again by `_malformed` for the error."""

    resource: NonEmpty
    action: NonEmpty
    id: RequestId = None
    payload: dict[str, Any] = {}


class Encoded:
    """An answer already encoded as JSON, shared by every request it answers (a cached
    aggregate): replies splice its bytes in rather than encoding it again."""

    __slots__ = ("body", "fragment")

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.fragment = orjson.Fragment(body)


def _default(value: Any) -> Any:
    """orjson handles uuid.UUID, datetime and date natively; these are the types it does not."""
    if type(value) is Encoded:
        return value.fragment
    if isinstance(value, uuid.UUID):  # asyncpg's own UUID subclass
        return str(value)
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if hasattr(value, "items"):  # asyncpg.Record and other mappings
        return dict(value.items())
    raise TypeError(f"cannot encode {type(value).__name__}")


def encode(message: Any) -> bytes:
    """Encode any outgoing message; the one place wsd turns Python values into JSON."""
    return orjson.dumps(message, default=_default, option=orjson.OPT_NON_STR_KEYS)


def _request_id(raw: Any) -> RequestId:
    return raw if isinstance(raw, (str, int, float)) and not isinstance(raw, bool) else None


def _wire_id(request_id: RequestId) -> Any:
    """The id as the client sent it: integers of any size come back digit for digit."""
    if isinstance(request_id, int) and request_id not in _ORJSON_INTS:
        return orjson.Fragment(str(request_id).encode())
    return request_id


_ENVELOPE = frozenset(("resource", "action", "id", "payload"))


def parse_request(frame: str | bytes) -> Request:
    """Parse one frame into a `Request`.

    Raises:
        BadJson: the frame is not JSON.
        BadRequest: JSON, but not a request envelope; `details` says what is wrong and the
            exception carries `request_id` when one could be read.
    """
    # msgspec, not orjson: it keeps integers of any size exact (orjson turns
    # 12345678901234567890123 into a float, so the id could not be echoed and a huge `limit`
    # read as "expected int, got float"), and refuses numbers out of a double's range.
    try:
        request = _ENVELOPE_DECODER.decode(frame)
    except msgspec.ValidationError as error:
        if str(error).endswith("out of range - at `$.id`"):
            raise BadRequest("malformed request envelope", {"fields": {"id": (
                f"a number out of range: integers of at most {MAX_ID_DIGITS} characters (digits "
                "and sign), or a float within a double's range")}}) from None
        return _malformed(frame)
    except msgspec.DecodeError:
        return _malformed(frame)
    except RecursionError:   # nested deeper than the interpreter's recursion limit
        raise _too_deep() from None
    return request


_ENVELOPE_DECODER = msgspec.json.Decoder(Request)


def _malformed(frame: str | bytes) -> Request:
    """The envelope `Request` refused, read field by field so the error names every problem
    (or a request after all: a null payload is an empty one)."""
    try:
        body = msgspec.json.decode(frame)
    except msgspec.DecodeError as error:
        raise BadJson(f"message is not valid JSON: {error}") from None
    except RecursionError:
        raise _too_deep() from None
    if not isinstance(body, dict):
        raise BadRequest("message must be a JSON object", {"got": type(body).__name__})
    request_id = body.get("id")
    problems: dict[str, str] = {}
    if "id" in body and request_id is not None and _request_id(request_id) is None:
        problems["id"] = "must be a string or a number"
    for key in ("resource", "action"):
        if not isinstance(body.get(key), str) or not body.get(key):
            problems[key] = "required, a non-empty string"
    payload = body.get("payload")
    if payload is None:
        payload = {}
    elif not isinstance(payload, dict):
        problems["payload"] = "must be a JSON object"
    if len(body) > 4 or any(key not in _ENVELOPE for key in body):
        for key in sorted(set(body) - _ENVELOPE):
            problems[key] = "unknown envelope field"
    if problems:
        raise BadRequest("malformed request envelope", {"fields": problems},
                         request_id=_request_id(request_id))
    return Request(body["resource"], body["action"], _request_id(request_id), payload)


def _too_deep() -> BadJson:
    """A frame nested deeper than msgspec can follow (Python's recursion limit, ~1,000 levels
    less the stack below): an error like any other, not a crash of the connection."""
    return BadJson("message nests too deeply", {"reason": "too_deep"})


def success_reply(request_id: RequestId, data: Any, **extra: Any) -> bytes:
    """`extra` goes beside `data` in the payload (e.g. `next_cursor` of a paginated list).

    An `Encoded` answer is spliced in as it is (the same bytes `encode` would write)."""
    if type(data) is Encoded and not extra:
        return b'{"type":"success","id":' + encode(_wire_id(request_id)) + b',"payload":{"data":' \
            + data.body + b"}}"
    return encode({"type": "success", "id": _wire_id(request_id), "payload": {"data": data, **extra}})


def error_reply(request_id: RequestId, error: WsdError) -> bytes:
    return encode({
        "type": "error",
        "id": _wire_id(request_id),
        "payload": {"code": str(error.code), "message": error.message, "details": error.details},
    })


def event_message(topic: str, payload: Any) -> bytes:
    return encode({"type": "event", "topic": topic, "payload": payload})


def chunk_message(request_id: RequestId, text: str) -> bytes:
    """One piece of an export's CSV, in order, before the request's success reply."""
    return encode({"type": "chunk", "id": _wire_id(request_id), "payload": {"data": text}})
