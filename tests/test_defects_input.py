"""Issue 20's findings on input, limits and access (items 5–8, 10, 14–16): each as the
input that showed it and the answer it must get now."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import os
import socket
import urllib.request
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ADMIN_TOKEN, ROOT, Client, Daemon, open_client, start_daemon
from tests.test_observability import METRICS_TOKEN, _wsd, samples, value
from tests.test_reliability import eventually, log_events
from tests.test_requirements import new_lead
from wsd.auth import hash_token
from wsd.config import ConfigError, load_config
from wsd.dispatcher import validate_payload
from wsd.errors import InvalidPayload
from wsd.handlers.leads import AllLeads
from wsd.pagination import decode_cursor, encode_cursor
from wsd.protocol import MAX_ID_DIGITS

BIG_ID = 2**70   # wider than the 64 bits orjson writes


async def raw_reply(client: Client) -> str:
    """The next reply frame as text (change events and updates skipped)."""
    while True:
        raw = await client.connection.recv()
        text = raw if isinstance(raw, str) else raw.decode()
        if msgspec.json.decode(text)["type"] in ("success", "error"):   # exact ids of any width
            return text


def tracebacks(daemon: Daemon) -> list[str]:
    return [line for line in daemon.log().splitlines()
            if "Traceback" in line or "never retrieved" in line or '"level":"error"' in line]


# -- 5: deep JSON ------------------------------------------------------------------------------

def nested(levels: int) -> str:
    return "[" * levels + "]" * levels


async def test_deep_json_is_bad_json_and_the_connection_stays(daemon: Daemon, db: Any) -> None:
    refused_before = value(samples(daemon.port), "wsd_requests_refused_total", code="bad_json")
    before = len(tracebacks(daemon))
    # Before logging in, as the attacker did: 10,000 nested arrays, twice.
    async with open_client(daemon.url, token=None) as connection:
        client = Client(connection)
        for _ in range(2):
            await connection.send(nested(10_000))
            error = orjson.loads(await raw_reply(client))["payload"]
            assert (error["code"], error["details"]) == ("bad_json", {"reason": "too_deep"})
        login = await client.request("auth", "login", {"token": ADMIN_TOKEN})
        assert login["type"] == "success", login
        # Payloads nested up to past what the decoder follows: run as a task, answered inline
        # (a cached action), through a live subscription. Wherever the recursion limit is met
        # (parsing, validating), the answer is an error envelope.
        messages: dict[tuple[str, str], int] = {}
        depths = [*range(1, 900, 37), *range(900, 1_001)]
        for levels in depths:
            deep = nested(levels)
            for frame in (f'{{"resource":"leads","action":"get_all_leads","id":1,"payload":{{"search":{deep}}}}}',
                          f'{{"resource":"dashboard","action":"get_agent_performance","id":1,'
                          f'"payload":{{"days":{deep}}}}}',
                          f'{{"resource":"live","action":"subscribe","id":1,"payload":'
                          f'{{"resource":"leads","action":"get_all_leads","payload":{{"search":{deep}}}}}}}'):
                await connection.send(frame)
                error = orjson.loads(await raw_reply(client))["payload"]
                assert error["code"] in ("bad_json", "invalid_payload"), (levels, error)
                key = (error["code"], error["message"].split(",")[0])
                messages[key] = messages.get(key, 0) + 1
        assert sum(messages.values()) == 3 * len(depths)
        assert messages[("bad_json", "message nests too deeply")]
        assert messages[("invalid_payload", "Expected `str | null`")]
        # A NUL deep inside: the walk that names the field holding it recurses too.
        for resource, action, field in (("leads", "get_all_leads", "search"),
                                        ("dashboard", "get_agent_performance", "days")):
            deep = "[" * 700 + '"\\u0000"' + "]" * 700
            await connection.send(f'{{"resource":"{resource}","action":"{action}","id":2,'
                                  f'"payload":{{"{field}":{deep}}}}}')
            error = orjson.loads(await raw_reply(client))["payload"]
            assert (error["code"], error["details"]) == ("invalid_payload", {"field": field + "[0]" * 700})
        assert await client.data("leads", "get_lead_pipeline")   # still open, still serving
    assert len(tracebacks(daemon)) == before
    refused = value(samples(daemon.port), "wsd_requests_refused_total", code="bad_json")
    assert refused - refused_before == 2 + messages[("bad_json", "message nests too deeply")]


def test_validating_a_payload_of_any_depth_raises_only_invalid_payload() -> None:
    """What the dispatcher does with a payload, whatever its depth: the NUL walk and the
    C-level encode and convert never let a RecursionError out."""
    def deep(levels: int, leaf: Any) -> Any:
        value = leaf
        for _ in range(levels):
            value = [value]
        return value

    with pytest.raises(InvalidPayload) as raised:
        validate_payload({"search": deep(3_000, "\x00")}, AllLeads)
    assert raised.value.details == {"field": None} and "too deeply" in raised.value.message
    with pytest.raises(InvalidPayload) as raised:
        validate_payload({"limit": 5, "search": deep(900, "a\x00")}, AllLeads)
    assert raised.value.details == {"field": "search" + "[0]" * 900}


# -- 6: request ids ----------------------------------------------------------------------------

async def test_ids_wider_than_64_bits_are_echoed_fresh_and_cached(postgres: str, db: Any,
                                                                  tmp_path: Path) -> None:
    daemon = start_daemon(tmp_path, postgres, cache_ttl=60.0)
    try:
        async with open_client(daemon.url) as connection:
            client = Client(connection)
            # get_lead_pipeline runs as a task; get_conversion_funnel's second call is answered
            # inline from the cache.
            for resource, action in (("leads", "get_lead_pipeline"), ("dashboard", "get_conversion_funnel"),
                                     ("dashboard", "get_conversion_funnel")):
                await connection.send(f'{{"resource":"{resource}","action":"{action}","id":{BIG_ID}}}')
                raw = await raw_reply(client)
                assert raw.startswith(f'{{"type":"success","id":{BIG_ID},'), raw[:80]
            assert await client.data("leads", "get_lead_pipeline")   # the connection stayed open
        lines = await eventually(lambda: [line for line in log_events(daemon, "request")
                                          if line["request_id"] == str(BIG_ID)])
        assert {line["action"] for line in lines} == {"get_lead_pipeline", "get_conversion_funnel"}
        assert not tracebacks(daemon)
    finally:
        assert daemon.stop() == 0


async def test_ids_up_to_the_digit_bound_are_echoed_and_past_it_named(admin: Client) -> None:
    # msgspec counts the minus sign: the bound is on the number's text.
    for longest in ("9" * MAX_ID_DIGITS, "-" + "9" * (MAX_ID_DIGITS - 1)):
        await admin.connection.send(f'{{"resource":"leads","action":"get_lead_pipeline","id":{longest}}}')
        raw = await raw_reply(admin)
        assert raw.startswith(f'{{"type":"success","id":{longest},')
    for too_long in ("9" * (MAX_ID_DIGITS + 1), "-" + "9" * MAX_ID_DIGITS, "1e400"):
        await admin.connection.send(f'{{"resource":"leads","action":"get_lead_pipeline","id":{too_long}}}')
        error = orjson.loads(await raw_reply(admin))
        assert error["id"] is None and error["payload"]["code"] == "bad_request", error
        assert list(error["payload"]["details"]["fields"]) == ["id"]
        assert str(MAX_ID_DIGITS) in error["payload"]["details"]["fields"]["id"]
    assert await admin.data("leads", "get_lead_pipeline")


# -- 7: cursors --------------------------------------------------------------------------------

def b64(value: Any) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(value)).decode().rstrip("=")


FORGED = [
    b64(["2024-01-01T00:00:00Z", 5]),                                   # the issue's
    b64(["2024-01-01T00:00:00+00:00", None]),
    b64([5, "00000000-0000-0000-0000-000000000000"]),
    b64(["2024-01-01T00:00:00+00:00", "00000000-0000-0000-0000-000000000000", 1]),
    b64({"at": "2024-01-01T00:00:00+00:00"}),
    b64(["2024-01-01T00:00:00", "00000000-0000-0000-0000-000000000000"]),   # no offset
    b64(["2024-01-01T00:00:00Z", "00000000000000000000000000000000"]),       # not as written
    "not base64 at all!", "", "€",
]


@pytest.mark.parametrize("resource, action", [("leads", "get_all_leads"), ("leads", "get_abandoned_leads"),
                                              ("meetings", "get_all_meetings")])
async def test_forged_cursors_are_invalid_payload_on_cursor(admin: Client, resource: str, action: str) -> None:
    for cursor in FORGED:
        error = await admin.error(resource, action, {"cursor": cursor})
        assert (error["code"], error["details"]) == ("invalid_payload", {"field": "cursor"}), cursor


async def test_issued_cursors_still_page(admin: Client, db: Any) -> None:
    for _ in range(3):
        await new_lead(db)
    seen: list[str] = []
    cursor = None
    while True:
        reply = await admin.request("leads", "get_all_leads", {"limit": 1, "cursor": cursor})
        seen += [lead["id"] for lead in reply["payload"]["data"]]
        cursor = reply["payload"]["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 3


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                    lambda children: st.lists(children, max_size=3)
                    | st.dictionaries(st.text(), children, max_size=3), max_leaves=6)


def only_issued(cursor: str, grouped: bool) -> None:
    """`decode_cursor` either refuses `cursor` as `invalid_payload` on `cursor`, or it is the
    very string wsd writes for the key it decodes to."""
    try:
        key = decode_cursor(cursor, grouped)
    except InvalidPayload as error:
        assert error.details == {"field": "cursor"}
        return
    assert key.at is not None and key.id is not None and (key.group is not None) == grouped
    assert encode_cursor(key.at, key.id, key.group) == cursor


# Timestamps wsd could have written (any zone, `Z` too) or any text; ids as wsd writes them, in
# the other spellings `uuid.UUID` reads, or any JSON value; groups; keys of them, or lists.
TIMESTAMPS = (st.datetimes(timezones=st.timezones()).map(lambda at: at.isoformat())
              | st.datetimes(timezones=st.just(dt.timezone.utc)).map(lambda at: at.isoformat().replace("+00:00", "Z"))
              | st.text())
IDS = st.uuids().flatmap(lambda u: st.sampled_from([str(u), u.hex, str(u).upper(), f"{{{u}}}", u.urn])) | JSON
GROUPS = st.integers(-1, 3) | st.booleans() | JSON
KEYS = (st.tuples(TIMESTAMPS, IDS).map(list) | st.tuples(TIMESTAMPS, IDS, GROUPS).map(list)
        | st.lists(TIMESTAMPS | IDS | GROUPS, max_size=4))


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(), JSON.map(b64), KEYS.map(b64)))
def test_fuzzed_cursors_are_refused_unless_issued(cursor: str) -> None:
    only_issued(cursor, grouped=False)
    only_issued(cursor, grouped=True)


# -- 8: PostgreSQL out of connection slots -------------------------------------------------------

async def hog_connections(dsn: str) -> list[asyncpg.Connection]:
    """Every connection slot PostgreSQL has left, held by this process."""
    held: list[asyncpg.Connection] = []
    while True:
        try:
            held.append(await asyncpg.connect(dsn))
        except asyncpg.TooManyConnectionsError:
            return held


async def test_postgres_out_of_connections_is_unavailable(postgres: str, db: Any, tmp_path: Path) -> None:
    daemon = start_daemon(tmp_path, postgres, max_inflight_per_connection=8,
                          database={"pool_min_size": 1, "pool_max_size": 8})
    held: list[asyncpg.Connection] = []
    try:
        async with open_client(daemon.url) as connection:
            client = Client(connection)
            held = await hog_connections(postgres)
            assert held
            reads = [await client.send("leads", "get_lead_pipeline") for _ in range(4)]
            writes = [await client.send("conversations", "update_agent_status",
                                        {"conversation_id": "00000000-0000-0000-0000-000000000000",
                                         "enabled": True}) for _ in range(4)]
            replies = {request_id: await client.reply_to(request_id) for request_id in reads + writes}
            codes = [reply["payload"].get("code", "ok") if reply["type"] == "error" else "ok"
                     for reply in replies.values()]
            assert set(codes) <= {"ok", "not_found", "unavailable"}, codes
            unavailable = {request_id: reply["payload"]["details"] for request_id, reply in replies.items()
                           if reply["type"] == "error" and reply["payload"]["code"] == "unavailable"}
            assert unavailable, codes
            for request_id, details in unavailable.items():
                expected = {"reason": "TooManyConnectionsError"}
                if request_id in writes:
                    expected["outcome"] = "not_applied"
                assert details == expected
            for hog in held:
                await hog.close()
            held = []
            assert await client.data("leads", "get_lead_pipeline") is not None
        assert not log_events(daemon, "request failed")
        assert not tracebacks(daemon)
    finally:
        for hog in held:
            await hog.close()
        assert daemon.stop() == 0


# -- 10: token names -----------------------------------------------------------------------------

def test_duplicate_token_names_are_refused_naming_both(tmp_path: Path) -> None:
    path = tmp_path / "twins.toml"
    path.write_text("[auth]\ntokens = [\n"
                    f'  {{ name = "ops", role = "admin", sha256 = "{hash_token("first")}" }},\n'
                    f'  {{ name = "dashboard", role = "viewer", sha256 = "{hash_token("second")}" }},\n'
                    f'  {{ name = "ops", role = "viewer", sha256 = "{hash_token("third")}" }},\n]\n')
    with pytest.raises(ConfigError, match=r"auth\.tokens\[2\]\.name: 'ops' .*auth\.tokens\[0\]"):
        load_config(path, environ={})
    result = _wsd("check-config", "--config", str(path))
    assert result.returncode != 0 and "auth.tokens[2].name" in result.stderr \
        and "auth.tokens[0]" in result.stderr, result.stderr


# -- 14: handshakes in progress --------------------------------------------------------------------

def socket_fds(pid: int) -> int:
    fds = Path(f"/proc/{pid}/fd")
    count = 0
    for fd in fds.iterdir():
        try:
            count += os.readlink(fd).startswith("socket:")
        except OSError:
            pass
    return count


def closed_by_peer(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


@pytest.mark.parametrize("transport", ["websockets", "picows"])
async def test_partial_handshakes_are_bounded_and_timed_out(postgres: str, tmp_path: Path,
                                                            transport: str) -> None:
    bound, sent = 20, 60
    daemon = start_daemon(tmp_path, postgres, transport=transport, max_handshakes=bound,
                          open_timeout_seconds=3.0)
    sockets: list[socket.socket] = []
    try:
        fds_before = socket_fds(daemon.process.pid)
        for _ in range(sent):
            sock = socket.create_connection(("127.0.0.1", daemon.port))
            sock.sendall(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")  # never ends
            sock.setblocking(False)
            sockets.append(sock)
            await asyncio.sleep(0.002)
        refused = await eventually(lambda: (n := sum(map(closed_by_peer, sockets))) >= sent - bound and n)
        assert refused == sent - bound
        assert socket_fds(daemon.process.pid) - fds_before <= bound
        # The open timeout ends the rest; then a real client connects.
        await eventually(lambda: all(closed_by_peer(sock) for sock in sockets), seconds=10)
        assert value(samples(daemon.port), "wsd_handshakes_refused_total", reason="max_handshakes") \
            == sent - bound
        async with open_client(daemon.url) as connection:
            assert await Client(connection).data("leads", "get_lead_pipeline") is not None
        assert any(line["reason"] == "max_handshakes" for line in log_events(daemon, "handshake refused"))
    finally:
        for sock in sockets:
            sock.close()
        assert daemon.stop() == 0


# -- 15: keepalive ---------------------------------------------------------------------------------

async def raw_websocket(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """An authenticated WebSocket that never answers a ping (websockets' client always would)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                 f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                 f"Authorization: Bearer {ADMIN_TOKEN}\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One unmasked frame from the server: (opcode, payload)."""
    first, second = await reader.readexactly(2)
    length = second & 0x7F
    if length == 126:
        length = int.from_bytes(await reader.readexactly(2), "big")
    elif length == 127:
        length = int.from_bytes(await reader.readexactly(8), "big")
    return first & 0x0F, await reader.readexactly(length)


@pytest.mark.parametrize("transport", ["websockets", "picows"])
async def test_keepalive_is_configured_and_closes_a_silent_socket_with_1011(
        postgres: str, tmp_path: Path, transport: str) -> None:
    daemon = start_daemon(tmp_path, postgres, transport=transport, ping_interval_seconds=0.3,
                          ping_timeout_seconds=0.5)
    try:
        reader, writer = await raw_websocket(daemon.port)
        async with open_client(daemon.url) as answering:   # websockets' client answers pings
            opcodes = []
            async with asyncio.timeout(10):
                while True:
                    opcode, payload = await read_frame(reader)
                    opcodes.append(opcode)
                    if opcode == 0x8:
                        break
            assert opcodes[0] == 0x9   # a ping, no pong, then the close
            assert int.from_bytes(payload[:2], "big") == 1011
            assert payload[2:] == b"keepalive ping timeout"
            writer.close()
            # Several intervals later the client that answers is still served.
            await asyncio.sleep(1.5)
            assert await Client(answering).data("leads", "get_lead_pipeline") is not None
    finally:
        assert daemon.stop() == 0


def test_the_close_codes_wsd_sends_are_documented() -> None:
    protocol = (ROOT / "docs" / "protocol.md").read_text()
    table = protocol[protocol.index("## Close codes"):]
    for code, setting in (("1001", "shutdown"), ("1008", "login_timeout_seconds"),
                          ("1009", "max_message_bytes"),
                          ("1011", "ping_timeout_seconds")):
        row = next(line for line in table.splitlines() if line.startswith(f"| {code} "))
        assert setting in row, row


# -- 16: /metrics and the Host header --------------------------------------------------------------

def scrape_as(port: int, host: str, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics",
                                     headers={"Host": host, **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_metrics_refuse_a_foreign_host_header(daemon: Daemon) -> None:
    port = daemon.port
    assert scrape_as(port, f"rebound.attacker.example:{port}") == 403
    assert scrape_as(port, "rebound.attacker.example") == 403
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "LOCALHOST."):
        assert scrape_as(port, host) == 200, host


async def test_metrics_allowed_hosts_setting_and_the_token(postgres: str, tmp_path: Path) -> None:
    daemon = start_daemon(tmp_path, postgres, sections={"metrics": {
        "allowed_hosts": ["wsd.internal"], "token_sha256": hash_token(METRICS_TOKEN)}})
    try:
        port = daemon.port
        assert scrape_as(port, f"wsd.internal:{port}") == 200
        assert scrape_as(port, f"localhost:{port}") == 403      # the list replaces the default
        assert scrape_as(port, f"evil.example:{port}") == 403
        assert scrape_as(port, f"evil.example:{port}", {"Authorization": f"Bearer {METRICS_TOKEN}"}) == 200
    finally:
        assert daemon.stop() == 0
