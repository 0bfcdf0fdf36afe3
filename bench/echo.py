"""The framework floor: a bare `websockets` server that answers every message with a reply of
the same size, with the same server options as wsd. Run as its own process.

Usage: python -m bench.echo PORT REPLY_BYTES
"""

from __future__ import annotations

import asyncio
import sys

from websockets.asyncio.server import ServerConnection, serve


async def main(port: int, reply_bytes: int) -> None:
    reply = '{"type":"success","id":null,"payload":{"data":"' + "x" * max(0, reply_bytes - 48) + '"}}'

    async def echo(connection: ServerConnection) -> None:
        async for _ in connection:
            await connection.send(reply)

    async with serve(echo, "127.0.0.1", port, compression=None, max_size=1 << 20):
        await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    try:  # the same event loop as wsd, so the ratio measures wsd's own work
        import uvloop
        uvloop.run(main(int(sys.argv[1]), int(sys.argv[2])))
    except ImportError:
        asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
