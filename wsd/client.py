"""`wsd-cli`: send test messages to a running wsd.

Example:
    wsd-cli conversations update_agent_status conversation_id=7b1e... enabled=false
    wsd-cli leads get_all_leads '{"limit": 5}'
    wsd-cli                      # interactive prompt, with history

The token comes from --token, else $WSD_TOKEN, else the demo daemon's `var/demo-token`.
Exit codes: 0 success, 1 error reply, 2 usage, 3 daemon unreachable or token refused.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import shlex
import sys
from pathlib import Path
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus, WebSocketException

from wsd.config import DEFAULT_CONFIG_PATH

__all__ = ["main", "parse_payload"]

DEFAULT_URL = "ws://127.0.0.1:8765/ws"
HISTORY_FILE = Path.home() / ".wsd_cli_history"
EXIT_ERROR_REPLY, EXIT_USAGE, EXIT_UNREACHABLE = 1, 2, 3


class UsageError(Exception):
    pass


def parse_payload(words: list[str]) -> dict[str, Any]:
    """One JSON object, or `key=value` words whose values are JSON when they parse as JSON.

    Example:
        >>> parse_payload(["enabled=false", "conversation_id=abc"])
        {'enabled': False, 'conversation_id': 'abc'}
    """
    if len(words) == 1 and words[0].lstrip().startswith("{"):
        try:
            payload = orjson.loads(words[0])
        except orjson.JSONDecodeError as error:
            raise UsageError(f"payload is not valid JSON: {error}") from None
        return payload
    payload: dict[str, Any] = {}
    for word in words:
        key, sep, raw = word.partition("=")
        if not sep or not key:
            raise UsageError(f"expected key=value or one JSON object, got {word!r}")
        try:
            payload[key] = orjson.loads(raw)
        except orjson.JSONDecodeError:
            payload[key] = raw
    return payload


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
        await self.connection.send(orjson.dumps(
            {"resource": resource, "action": action, "id": request_id, "payload": payload}).decode())
        while True:
            reply = orjson.loads(await self.connection.recv())
            if reply.get("id") == request_id or reply.get("type") == "error" and reply.get("id") is None:
                return reply


def _print(reply: dict[str, Any]) -> None:
    print(orjson.dumps(reply, option=orjson.OPT_INDENT_2).decode())


async def _one_shot(client: Client, words: list[str]) -> int:
    resource, action, *rest = words
    reply = await client.request(resource, action, parse_payload(rest))
    _print(reply)
    return 0 if reply.get("type") == "success" else EXIT_ERROR_REPLY


async def _interactive(client: Client) -> int:
    try:
        import readline
        if HISTORY_FILE.exists():
            readline.read_history_file(HISTORY_FILE)
    except (ImportError, OSError):
        readline = None  # type: ignore[assignment]
    print("wsd-cli: RESOURCE ACTION [JSON | key=value ...]; Ctrl-D quits")
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
    except InvalidStatus as error:
        status = error.response.status_code
        reason = "token refused" if status == 401 else "handshake refused"
        print(f"wsd-cli: {reason} by {url} (HTTP {status})", file=sys.stderr)
    except (OSError, asyncio.TimeoutError, WebSocketException) as error:
        print(f"wsd-cli: cannot reach wsd at {url}: {error}", file=sys.stderr)
    return EXIT_UNREACHABLE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wsd-cli", description="send requests to a running wsd")
    parser.add_argument("--url", default=os.environ.get("WSD_URL", DEFAULT_URL))
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
        return asyncio.run(_run(args.url, token, args.words))
    except UsageError as error:
        print(f"wsd-cli: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
