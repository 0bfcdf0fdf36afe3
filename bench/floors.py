"""The hot-path floors: bare servers doing what wsd's envelope does, and nothing else.

    python -m bench.floors FRAMEWORK PORT ANSWER_FILE DSN

FRAMEWORK is `websockets` (websockets 17 + uvloop, the framework wsd runs on, with wsd's
server options) or `aiohttp` (aiohttp + uvloop, for reference). Each parses a request with
orjson, looks its handler up in a dict by (resource, action) and answers with orjson:

- `dashboard.get_dashboard_stats`: the same cached answer wsd gives (ANSWER_FILE holds the
  `data` of wsd's reply), encoded per request — floor (a), (c);
- `leads.get_lead_with_complete_data`: the action's own SQL
  (wsd/sql/leads/lead_with_complete_data.sql) through asyncpg on a pool of wsd's size and
  set-up (`wsd.database.create_pool`), its JSON text passed through — floor (b), (c).

No auth, validation, limits, metrics nor log: that is what the ratio to wsd measures.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any, Awaitable, Callable

import orjson

from wsd.database import create_pool, load_queries


async def handlers(answer_file: str, dsn: str) -> dict[tuple[str, str], Callable[[Any], Awaitable[Any]]]:
    answer = orjson.loads(open(answer_file, "rb").read())
    pool = await create_pool(dsn, 2, 10) if dsn != "none" else None
    sql = load_queries().leads.lead_with_complete_data.sql

    async def stats(payload: Any) -> Any:
        return answer

    async def lead(payload: Any) -> Any:
        assert pool is not None
        return orjson.Fragment(await pool.fetchval(sql, payload["lead_id"]))

    return {("dashboard", "get_dashboard_stats"): stats, ("leads", "get_lead_with_complete_data"): lead}


def reply(request_id: Any, data: Any) -> bytes:
    return orjson.dumps({"type": "success", "id": request_id, "payload": {"data": data}})


async def serve_websockets(port: int, table: dict[tuple[str, str], Callable[[Any], Awaitable[Any]]]) -> None:
    from websockets.asyncio.server import ServerConnection, serve
    from websockets.exceptions import ConnectionClosed

    async def connection_handler(connection: ServerConnection) -> None:
        try:
            async for frame in connection:
                request = orjson.loads(frame)
                handler = table[request["resource"], request["action"]]
                data = await handler(request.get("payload"))
                await connection.send(reply(request.get("id"), data), text=True)
        except ConnectionClosed:
            pass

    async with serve(connection_handler, "127.0.0.1", port, compression=None, max_size=1 << 20,
                     ping_interval=20, ping_timeout=20):
        await asyncio.get_running_loop().create_future()


async def serve_aiohttp(port: int, table: dict[tuple[str, str], Callable[[Any], Awaitable[Any]]]) -> None:
    from aiohttp import WSMsgType, web

    async def connection_handler(http_request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False, max_msg_size=1 << 20)
        await ws.prepare(http_request)
        async for message in ws:
            if message.type is not WSMsgType.TEXT:
                continue
            request = orjson.loads(message.data)
            handler = table[request["resource"], request["action"]]
            data = await handler(request.get("payload"))
            await ws.send_frame(reply(request.get("id"), data), WSMsgType.TEXT)
        return ws

    app = web.Application()
    app.router.add_get("/ws", connection_handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.get_running_loop().create_future()


async def main(framework: str, port: int, answer_file: str, dsn: str) -> None:
    table = await handlers(answer_file, dsn)
    await (serve_websockets if framework == "websockets" else serve_aiohttp)(port, table)


if __name__ == "__main__":
    import uvloop
    uvloop.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]))
