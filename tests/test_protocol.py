"""Envelope errors: every malformed message gets a clear error and the connection lives on."""

from __future__ import annotations

from typing import Callable

import msgspec
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed

from tests.conftest import Client, open_client
from wsd.errors import WsdError
from wsd.protocol import Request, _malformed, parse_request


async def _raw(client: Client, frame: str | bytes) -> dict:
    await client.connection.send(frame)
    return await client.next_reply()


async def assert_still_usable(client: Client) -> None:
    error = await client.error("nothing", "here")
    assert error["code"] == "unknown_action"


@pytest.mark.parametrize("frame, code, request_id", [
    ("this is not json", "bad_json", None),
    ('{"resource": "conversations", ', "bad_json", None),
    ("[1, 2, 3]", "bad_request", None),
    ('"just a string"', "bad_request", None),
    ('{"resource": "conversations", "id": "a1"}', "bad_request", "a1"),
    ('{"action": "update_agent_status", "id": 7}', "bad_request", 7),
    ('{"resource": 5, "action": "x", "id": "a2"}', "bad_request", "a2"),
    ('{"resource": "conversations", "action": "update_agent_status", "id": "a3", "payload": [1]}',
     "bad_request", "a3"),
    ('{"resource": "a", "action": "b", "id": {"nested": true}}', "bad_request", None),
    ('{"resource": "a", "action": "b", "id": "a4", "extra": 1}', "bad_request", "a4"),
])
async def test_malformed_envelopes_get_an_error_and_the_connection_stays(admin: Client, frame: str,
                                                                         code: str, request_id) -> None:
    reply = await _raw(admin, frame)
    assert reply["type"] == "error"
    assert reply["id"] == request_id
    assert reply["payload"]["code"] == code
    assert reply["payload"]["message"]
    await assert_still_usable(admin)


async def test_bad_request_details_name_the_fields(admin: Client) -> None:
    reply = await _raw(admin, '{"action": 3, "id": "x", "payload": "p"}')
    assert reply["payload"]["details"]["fields"] == {
        "resource": "required, a non-empty string",
        "action": "required, a non-empty string",
        "payload": "must be a JSON object",
    }


async def test_unknown_resource_and_action(admin: Client) -> None:
    error = await admin.error("nope", "get_all")
    assert error == {"code": "unknown_action", "message": "no action nope.get_all",
                     "details": {"resource": "nope", "action": "get_all"}}
    error = await admin.error("conversations", "delete_everything")
    assert error["code"] == "unknown_action"


async def test_binary_frames_are_parsed_like_text(admin: Client, db) -> None:
    reply = await _raw(admin, b'{"resource": "x", "action": "y", "id": 1}')
    assert reply == {"type": "error", "id": 1, "payload": {
        "code": "unknown_action", "message": "no action x.y", "details": {"resource": "x", "action": "y"}}}


async def test_numeric_ids_are_echoed_as_numbers(admin: Client) -> None:
    request_id = await admin.send("x", "y", request_id=42)
    reply = await admin.reply_to(42)
    assert reply["id"] == request_id == 42


async def test_oversized_frame_closes_with_1009_and_others_are_unaffected(daemon, admin: Client) -> None:
    async with open_client(daemon.url) as connection:
        big = orjson.dumps({"resource": "x", "action": "y", "payload": {"blob": "a" * 70_000}}).decode()
        await connection.send(big)
        with pytest.raises(ConnectionClosed) as closed:
            while True:  # events pushed before the close are not what this test is about
                await connection.recv()
        assert closed.value.rcvd.code == 1009
    await assert_still_usable(admin)


async def test_many_frames_answered_in_any_order_with_their_ids(admin: Client) -> None:
    ids = [await admin.send("x", f"a{i}") for i in range(20)]
    replies = {}
    for _ in ids:
        reply = await admin.next_reply()
        replies[reply["id"]] = reply
    assert set(replies) == set(ids)
    assert {r["payload"]["details"]["action"] for r in replies.values()} == {f"a{i}" for i in range(20)}


_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                       | st.text(max_size=5), lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(st.text(max_size=3), inner, max_size=3), max_leaves=6)
_names = st.sampled_from(["", "leads", "get_lead"]) | _values
_envelopes = st.fixed_dictionaries({}, optional={
    "resource": _names, "action": _names, "id": st.none() | st.integers() | st.text(max_size=3) | _values,
    "payload": st.none() | st.dictionaries(st.text(max_size=3), _values, max_size=3) | _values,
    "extra": _values})


def _outcome(parse: Callable[[str], Request], frame: str) -> object:
    try:
        return parse(frame)
    except WsdError as error:
        return error.code, error.message, error.details, getattr(error, "request_id", None)


@settings(max_examples=500, deadline=None)
@given(_envelopes | _values)
def test_the_fast_envelope_parse_agrees_with_the_field_by_field_one(body: object) -> None:
    """`parse_request` decodes straight into `Request` and falls back to `_malformed` only on
    refusal: for any JSON, what it returns or raises must be what `_malformed` alone gives."""
    frame = msgspec.json.encode(body).decode()   # integers of any size, as a client may send
    assert _outcome(parse_request, frame) == _outcome(_malformed, frame)
