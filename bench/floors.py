"""The hot-path floors: bare servers doing what wsd's envelope does, and nothing else.

    python -m bench.floors FRAMEWORK PORT ANSWER_FILE DSN

FRAMEWORK is `websockets` (websockets 17 + uvloop, the framework wsd runs on, with wsd's
server options), `aiohttp` (aiohttp + uvloop, for reference) or `picows` (picows + uvloop,
Cython frames and callbacks instead of a coroutine per connection: what replacing the frame
layer could gain; `pip install picows`, not a dependency of wsd). Each parses a request with
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


async def serve_picows(port: int, table: dict[tuple[str, str], Callable[[Any], Awaitable[Any]]]) -> None:
    """Frames arrive in a callback: each request's handler runs as a task (the point read
    awaits PostgreSQL; a callback cannot)."""
    from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server

    class Listener(WSListener):  # type: ignore[misc]
        transport: WSTransport

        def on_ws_connected(self, transport: WSTransport) -> None:
            self.transport = transport

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if frame.msg_type is WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code())
                transport.disconnect()
                return
            if frame.msg_type is not WSMsgType.TEXT:
                return
            request = orjson.loads(frame.get_payload_as_bytes())
            handler = table[request["resource"], request["action"]]
            asyncio.ensure_future(self.answer(request.get("id"), handler(request.get("payload"))))

        async def answer(self, request_id: Any, data: Awaitable[Any]) -> None:
            self.transport.send(WSMsgType.TEXT, reply(request_id, await data))

    await ws_create_server(lambda request: Listener(), "127.0.0.1", port)
    await asyncio.get_running_loop().create_future()


async def main(framework: str, port: int, answer_file: str, dsn: str) -> None:
    table = await handlers(answer_file, dsn)
    serve = {"websockets": serve_websockets, "aiohttp": serve_aiohttp, "picows": serve_picows}[framework]
    await serve(port, table)


if __name__ == "__main__":
    import uvloop
    uvloop.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]))
