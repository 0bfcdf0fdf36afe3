"""Hypothesis strategies built from the actions' msgspec payload types, and their mutations.

A payload is drawn from the action's schema (`msgspec.inspect`), so every field the code
declares is exercised with values the type allows, then possibly mutated: a field replaced
by a value of the wrong type, an extreme number, odd unicode, a far date, a forged cursor, an
unknown field. UUID fields draw from the ids of the seeded rows half of the time, so writes
reach real records.
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

import msgspec
from hypothesis import strategies as st
from msgspec import inspect as mi

JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=30))
JSON = st.recursive(JSON_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)

ODD_TEXT = st.sampled_from([
    "", " ", "\u00a0", "\t\n", "a@b.com\n", "\u0000", "x" * 5000, "🦄" * 300, "\u202e" + "abc",
    "'; DROP TABLE leads; --", "%", "_", "\\", "Chat\u00a0en vivo", "\ufeff", "\u2028",
])
FAR_DATES = st.sampled_from(["0001-01-01", "9999-12-31", "9999-12-30", "1899-12-31", "2024-02-29",
                             "2026-03-29", "2026-10-25", "2024-13-01", "01/08/2024", ""])
FAR_INSTANTS = st.sampled_from([
    "9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59", "2026-03-29T02:30:00+01:00",
    "2030-01-07T10:00:00", "2030-01-07T10:00:00Z", "2030-01-06T02:00:00+01:00", "1970-01-01T00:00:00Z",
    "2030-01-07T09:00:00.999999+01:00", "not a time"])


def forged_cursor() -> st.SearchStrategy[str]:
    parts = st.tuples(st.one_of(FAR_INSTANTS, st.text(max_size=10), st.integers()),
                      st.one_of(st.uuids().map(str), st.text(max_size=10), st.none()))
    return st.one_of(
        parts.map(lambda p: base64.urlsafe_b64encode(msgspec.json.encode(list(p))).decode().rstrip("=")),
        st.text(max_size=40))


def for_type(info: Any, ids: list[str], name: str = "") -> st.SearchStrategy[Any]:
    """Valid-by-type JSON values for one msgspec type."""
    if isinstance(info, mi.Metadata):
        return for_type(info.type, ids, name)
    if isinstance(info, mi.UUIDType):
        return st.one_of(st.sampled_from(ids), st.uuids().map(str)) if ids else st.uuids().map(str)
    if isinstance(info, mi.StrType):
        if name == "cursor":
            return forged_cursor()
        low, high = info.min_length or 0, info.max_length if info.max_length is not None else 300
        if info.pattern:
            return st.one_of(st.from_regex(info.pattern, fullmatch=True).filter(lambda s: len(s) <= high),
                             st.just("cliente@empresa.com"))
        return st.one_of(st.text(min_size=low, max_size=min(high, 300)), ODD_TEXT)
    if isinstance(info, mi.IntType):
        low = info.ge if info.ge is not None else -(2**65)
        high = info.le if info.le is not None else 2**65
        return st.integers(min_value=low, max_value=high)
    if isinstance(info, mi.BoolType):
        return st.booleans()
    if isinstance(info, mi.DateType):
        return st.one_of(st.dates().map(dt.date.isoformat), FAR_DATES)
    if isinstance(info, mi.DateTimeType):
        soon = dt.datetime.now(dt.timezone.utc)
        near = st.integers(min_value=-30 * 24 * 4, max_value=60 * 24 * 4).map(
            lambda quarter: (soon + dt.timedelta(minutes=15 * quarter)).replace(second=0, microsecond=0).isoformat())
        return st.one_of(near, st.datetimes(timezones=st.timezones()).map(dt.datetime.isoformat), FAR_INSTANTS)
    if isinstance(info, mi.LiteralType):
        return st.sampled_from(list(info.values))
    if isinstance(info, mi.NoneType):
        return st.none()
    if isinstance(info, mi.UnionType):
        return st.one_of([for_type(t, ids, name) for t in info.types if type(t).__name__ != "UnsetType"])
    if isinstance(info, mi.ListType):
        return st.lists(for_type(info.item_type, ids, name), max_size=info.max_length or 5)
    if isinstance(info, mi.StructType):
        return payloads(info, ids)
    raise TypeError(f"no strategy for {info!r}")


def payloads(info: mi.StructType, ids: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with every required field and any subset of the optional ones."""
    required = {f.encode_name: for_type(f.type, ids, f.name) for f in info.fields if f.required}
    optional = {f.encode_name: for_type(f.type, ids, f.name) for f in info.fields if not f.required}
    return st.fixed_dictionaries(required, optional=optional)


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[dict[str, Any]]) -> Any:
    """A drawn payload, then one or no mutation of it."""
    payload = draw(base)
    how = draw(st.sampled_from(["none", "none", "wrong", "drop", "extra", "whole"]))
    keys = sorted(payload)
    if how == "wrong" and keys:
        payload[draw(st.sampled_from(keys))] = draw(st.one_of(JSON, ODD_TEXT, FAR_DATES, FAR_INSTANTS))
    elif how == "drop" and keys:
        payload.pop(draw(st.sampled_from(keys)))
    elif how == "extra":
        payload[draw(st.text(min_size=1, max_size=10))] = draw(JSON)
    elif how == "whole":
        return draw(JSON)
    return payload


def action_strategy(payload_type: type[msgspec.Struct], ids: list[str]) -> st.SearchStrategy[Any]:
    info = mi.type_info(payload_type)
    assert isinstance(info, mi.StructType)
    return mutated(payloads(info, ids))


ENVELOPES = st.one_of(
    JSON,
    st.fixed_dictionaries({"resource": st.one_of(st.sampled_from(["leads", "meetings", "requirements"]), JSON),
                           "action": st.one_of(st.sampled_from(["get_all_leads", "create_meeting"]), JSON)},
                          optional={"id": st.one_of(JSON, st.integers(min_value=-(10**30), max_value=10**30)),
                                    "payload": JSON, "extra": JSON}),
)
