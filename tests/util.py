"""Small helpers shared by the tests."""

from __future__ import annotations

from collections.abc import Callable

import anyio


async def wait_until(
    predicate: Callable[[], bool], timeout: float = 5.0, step: float = 0.01
) -> None:
    """Poll ``predicate`` until it is true; fail the test after ``timeout`` seconds."""
    with anyio.fail_after(timeout):
        while True:
            if predicate():
                return
            await anyio.sleep(step)
