"""`wsd-cli`: send test messages to a running wsd.

Example:
    wsd-cli conversations update_agent_status conversation_id=7b1e... enabled=false
    wsd-cli leads get_all_leads '{"limit": 5}'
    wsd-cli live subscribe '{"resource": "dashboard", "action": "get_dashboard_stats"}'
    wsd-cli export leads '{"step": "bant"}' > bant.csv    # the CSV on stdout
    wsd-cli                      # interactive prompt, with history

The token comes from --token, else $WSD_TOKEN, else the demo daemon's `var/demo-token`.
Exit codes: 0 success (also when the reader of stdout stopped early, as `| head` does),
1 error reply, 2 usage, 3 daemon unreachable or token refused.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import shlex
import sys
from pathlib import Path
from typing import Any, Mapping

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus, WebSocketException

import msgspec
from msgspec import inspect as mi

from wsd.config import DEFAULT_CONFIG_PATH, ConfigError, load_config

__all__ = ["main", "parse_payload", "default_url"]

DEFAULT_URL = "ws://127.0.0.1:8765/ws"
HISTORY_FILE = Path.home() / ".wsd_cli_history"
EXIT_ERROR_REPLY, EXIT_USAGE, EXIT_UNREACHABLE = 1, 2, 3


class UsageError(Exception):
    pass


_TEXT_TYPES = (mi.StrType, mi.UUIDType, mi.DateType, mi.DateTimeType)


def _is_text(info: mi.Type) -> bool:
    """Whether a field's JSON form is a string (then `key=2024` means the text "2024")."""
    if isinstance(info, mi.Metadata):
        return _is_text(info.type)
    if isinstance(info, mi.UnionType):
        return all(_is_text(t) or isinstance(t, mi.NoneType) for t in info.types)
    if isinstance(info, mi.LiteralType):
        return all(isinstance(value, str) for value in info.values)
    return isinstance(info, _TEXT_TYPES)


def _text_fields(resource: str, action: str) -> set[str]:
    """The action's fields whose values are strings, from its registered payload type."""
    from wsd.handlers import ALL_TABLES  # the registry: wsd-cli types values by its schema
    from wsd.handlers.exports import EXPORTS

    if resource == "export" and action in EXPORTS:  # an export takes the payload of its read
        resource, action = EXPORTS[action].read
    for table in ALL_TABLES:
        for registered in table.actions:
            if table.resource == resource and registered.name == action:
                info = mi.type_info(registered.payload_type)
                assert isinstance(info, mi.StructType)
                return {f.encode_name for f in info.fields if _is_text(f.type)}
    return set()


def parse_payload(words: list[str], resource: str = "", action: str = "") -> dict[str, Any]:
    """One JSON object, or `key=value` words typed by the action's payload schema: a string
    field takes the value as it is (`search=2024` is the text "2024"), any other field
    reads it as JSON (`enabled=false`, `limit=5`); unknown fields are guessed as JSON.

    Example:
        >>> parse_payload(["search=2024", "limit=5"], "leads", "get_all_leads")
        {'search': '2024', 'limit': 5}
    """
    if len(words) == 1 and words[0].lstrip().startswith("{"):
        try:
            decoded = msgspec.json.decode(words[0])
        except msgspec.DecodeError as error:
            raise UsageError(f"payload is not valid JSON: {error}") from None
        if not isinstance(decoded, dict):
            raise UsageError("payload must be a JSON object")
        return decoded
    text_fields = _text_fields(resource, action)
    payload: dict[str, Any] = {}
    for word in words:
        key, sep, raw = word.partition("=")
        if not sep or not key:
            raise UsageError(f"expected key=value or one JSON object, got {word!r}")
        if key in text_fields:
            payload[key] = raw
            continue
        try:
            payload[key] = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            payload[key] = raw
    return payload


def default_url(environ: Mapping[str, str] | None = None) -> str:
    """$WSD_URL, else the daemon's own address from config.toml and its WSD_* overrides
    (WSD_SERVER_PORT, WSD_SERVER_HOST, WSD_SERVER_PATH), else ws://127.0.0.1:8765/ws."""
    environ = os.environ if environ is None else environ
    if environ.get("WSD_URL"):
        return environ["WSD_URL"]
    try:
        server = load_config(environ=environ).server
    except (ConfigError, OSError):
        return DEFAULT_URL
    host = "127.0.0.1" if server.host in ("0.0.0.0", "::", "") else server.host
    return f"ws://{host}:{server.port}{server.path}"


def _default_token() -> str | None:
    if os.environ.get("WSD_TOKEN"):
        return os.environ["WSD_TOKEN"]
    for folder in (Path.cwd(), DEFAULT_CONFIG_PATH.parent):
        token_file = folder / "var" / "demo-token"
        if token_file.exists():
            return token_file.read_text().strip()
    return None


class Client:
    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.ids = itertools.count(1)

    async def request(self, resource: str, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Send one request and wait for the reply with its id (events are skipped)."""
        request_id = f"cli-{next(self.ids)}"
        await self.connection.send(msgspec.json.encode(
            {"resource": resource, "action": action, "id": request_id, "payload": payload}).decode())
        while True:
            reply: dict[str, Any] = msgspec.json.decode(await self.connection.recv())
            if reply.get("id") == request_id or reply.get("type") == "error" and reply.get("id") is None:
                return reply


    async def export(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Send an export request and write its CSV chunks to stdout as they come; returns
        the final reply."""
        request_id = f"cli-{next(self.ids)}"
        await self.connection.send(msgspec.json.encode(
            {"resource": "export", "action": action, "id": request_id, "payload": payload}).decode())
        out = sys.stdout.buffer
        while True:
            message: dict[str, Any] = msgspec.json.decode(await self.connection.recv())
            if message.get("id") != request_id:
                if message.get("type") == "error" and message.get("id") is None:
                    return message
                continue
            if message.get("type") != "chunk":
                out.flush()
                return message
            out.write(message["payload"]["data"].encode())


def _print(reply: dict[str, Any]) -> None:
    print(orjson.dumps(reply, option=orjson.OPT_INDENT_2).decode(), flush=True)


async def _one_shot(client: Client, words: list[str]) -> int:
    resource, action, *rest = words
    if resource == "export":  # the CSV goes to stdout, the final reply to stderr
        reply = await client.export(action, parse_payload(rest, resource, action))
        print(orjson.dumps(reply).decode(), file=sys.stderr)
        return 0 if reply.get("type") == "success" else EXIT_ERROR_REPLY
    reply = await client.request(resource, action, parse_payload(rest, resource, action))
    _print(reply)
    if reply.get("type") != "success":
        return EXIT_ERROR_REPLY
    if (resource, action) == ("live", "subscribe"):
        await _follow(client, reply["payload"]["data"]["subscription"])
    return 0


async def _follow(client: Client, subscription: str) -> None:
    """Print the subscription's updates as they come, until Ctrl-C or the connection ends."""
    print(f"wsd-cli: following {subscription}; Ctrl-C stops", file=sys.stderr)
    while True:
        message: dict[str, Any] = msgspec.json.decode(await client.connection.recv())
        if message.get("type") == "update" and message.get("subscription") == subscription:
            _print(message)


def help_text(words: list[str]) -> str:
    """The prompt's `help`: every resource and its actions, or one action's role and payload
    fields, read from the registry (never hand-written, so it cannot drift).

    Example:
        >>> print(help_text(["leads", "get_lead_with_complete_data"]))
        leads get_lead_with_complete_data (viewer)
          lead_id: uuid
    """
    from wsd.handlers import ALL_TABLES
    from wsd.live import LIVE_ACTIONS, LIVE_RESOURCE
    from wsd.schema import payload_fields

    catalogue = {table.resource: {a.name: (a.payload_type, a.role) for a in table.actions}
                 for table in ALL_TABLES}
    catalogue[LIVE_RESOURCE] = {name: (payload, "viewer") for name, payload in LIVE_ACTIONS.items()}
    if not words:
        return "\n".join(["RESOURCE ACTION [JSON | key=value ...]; `help RESOURCE ACTION` shows its payload",
                          *(f"  {resource}: {' '.join(actions)}" for resource, actions in catalogue.items())])
    actions = catalogue.get(words[0])
    if actions is None or len(words) > 2 or (len(words) == 2 and words[1] not in actions):
        return f"no such resource or action: {' '.join(words)} (`help` lists them)"
    if len(words) == 1:
        return "\n".join(f"{words[0]} {name} ({role})" for name, (_, role) in actions.items())
    payload, role = actions[words[1]]
    fields = [line.replace("`", "").replace("\\|", "|") for line in payload_fields(payload)]
    return "\n".join([f"{words[0]} {words[1]} ({role})", *(f"  {line}" for line in fields or ["no payload"])])


async def _interactive(client: Client) -> int:
    try:
        import readline
        if HISTORY_FILE.exists():
            readline.read_history_file(HISTORY_FILE)
    except (ImportError, OSError):
        readline = None  # type: ignore[assignment]
    print("wsd-cli: RESOURCE ACTION [JSON | key=value ...]; `help` lists them; Ctrl-D quits")
    try:
        while True:
            try:
                line = await asyncio.to_thread(input, "wsd> ")
            except EOFError:
                print()
                return 0
            words = shlex.split(line)
            if not words:
                continue
            if words[0] == "help":
                print(help_text(words[1:]))
                continue
            if len(words) < 2:
                print("need RESOURCE ACTION")
                continue
            try:
                await _one_shot(client, words)
            except UsageError as error:
                print(f"usage: {error}")
    finally:
        if readline is not None:
            readline.write_history_file(HISTORY_FILE)


async def _run(url: str, token: str | None, words: list[str]) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        async with connect(url, additional_headers=headers, open_timeout=5, compression=None,
                           max_size=None) as connection:
            client = Client(connection)
            return await (_one_shot(client, words) if words else _interactive(client))
    except BrokenPipeError:
        return _stdout_closed()
    except InvalidStatus as error:
        status = error.response.status_code
        reason = "token refused" if status == 401 else "handshake refused"
        print(f"wsd-cli: {reason} by {url} (HTTP {status})", file=sys.stderr)
    except (OSError, asyncio.TimeoutError, WebSocketException) as error:
        print(f"wsd-cli: cannot reach wsd at {url}: {error}", file=sys.stderr)
    return EXIT_UNREACHABLE


def _stdout_closed() -> int:
    """Whoever read our output stopped (`wsd-cli ... | head`): that is not an unreachable
    daemon but the reader being done, so exit 0 quietly, and point stdout at /dev/null so
    the interpreter's last flush at exit does not complain about the broken pipe again."""
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, sys.stdout.fileno())
    os.close(null)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wsd-cli", description="send requests to a running wsd")
    parser.add_argument("--url", default=None,
                        help="default: $WSD_URL, else the address in config.toml / WSD_SERVER_*")
    parser.add_argument("--token", default=None, help="default: $WSD_TOKEN or var/demo-token")
    parser.add_argument("words", nargs="*", metavar="RESOURCE ACTION [JSON | key=value ...]")
    args = parser.parse_args(argv)
    if len(args.words) == 1:
        parser.error("give RESOURCE and ACTION, or neither for the interactive prompt")
    token = args.token or _default_token()
    if token is None:
        print("wsd-cli: no token: pass --token or set WSD_TOKEN", file=sys.stderr)
        return EXIT_USAGE
    try:
        return asyncio.run(_run(args.url or default_url(), token, args.words))
    except BrokenPipeError:
        return _stdout_closed()
    except UsageError as error:
        print(f"wsd-cli: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
