"""Run the local compute service in its own process (for benchmarks that time only the client).

Usage: python benchmarks/_local_service.py MQTT_URL

Prints the compute URL on one line once the service answers, then serves until stdin closes.
"""

from __future__ import annotations

import sys

import anyio
import anyio.to_thread

from cl_client.testing import LocalComputeService


async def main(mqtt_url: str) -> None:
    async with LocalComputeService(mqtt_url) as service:
        print(service.compute_url, flush=True)
        await anyio.to_thread.run_sync(sys.stdin.read)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1])
