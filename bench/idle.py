"""Opens N authenticated WebSocket connections and holds them idle until terminated.

Prints the number opened once all are up. Usage: python -m bench.idle URL TOKEN N
"""

from __future__ import annotations

import asyncio
import resource
import sys

from websockets.asyncio.client import connect


async def main(url: str, token: str, count: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    headers = {"Authorization": f"Bearer {token}"}
    connections = []
    for start in range(0, count, 200):
        batch = [connect(url, additional_headers=headers, compression=None, ping_interval=None)
                 for _ in range(min(200, count - start))]
        connections += await asyncio.gather(*batch)
    print(len(connections), flush=True)
    await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
