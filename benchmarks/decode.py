"""Decoding benchmark: the cost of turning one MQTT payload into what the hub keeps.

Prints, per payload kind, the time per decode (best of several runs) and, for job events, the
number of GC-tracked objects that one cached update holds:

* the real server's job event (``json.dumps`` of four keys): the fast path, one regular
  expression, straight into the slotted JobUpdate;
* the same event in another key order or spacing: the validating path (bounded JSON decoder,
  then the JobEvent pydantic model);
* a capability message, and hostile payloads (100,000 ``[``, a 5,000-digit integer, 2 MB), which
  are refused before any parsing.

Run: ``uv run python benchmarks/decode.py [--number 20000]``.
"""

from __future__ import annotations

import argparse
import gc
import timeit
from collections.abc import Callable

from cl_client._core.errors import ProtocolError
from cl_client._core.payloads import decode_job_event, decode_worker

REAL_EVENT = (
    b'{"job_id": "4080ea61-1d7b-4508-8ddf-23a6f21b6366", "event_type": "processing", '
    b'"timestamp": 1795251260038, "progress": 0}'
)
OTHER_SHAPE = (
    b'{"event_type":"processing","job_id":"4080ea61-1d7b-4508-8ddf-23a6f21b6366",'
    b'"progress":0,"timestamp":1795251260038}'
)
WORKER = (
    b'{"id": "worker-1", "capabilities": ["image_conversion", "hash", "exif", "clip_embedding"], '
    b'"idle_count": 1, "timestamp": 1795251015224}'
)
HOSTILE = {
    "100,000 '['": b"[" * 100_000,
    "5,000-digit integer": b'{"job_id": "a", "event_type": "queued", "progress": '
    + b"9" * 5000
    + b"}",
    "2 MB of 'x'": b"x" * 2_000_000,
}


def per_call(fn: Callable[[], object], number: int) -> float:
    """Microseconds per call, best of five runs."""
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


def refused(payload: bytes) -> Callable[[], object]:
    def run() -> object:
        try:
            return decode_job_event(payload)
        except ProtocolError as exc:
            return exc

    return run


def tracked_objects_per_update(count: int = 10_000) -> float:
    """GC-tracked objects added by caching ``count`` decoded events (as the hub does)."""
    payloads = [REAL_EVENT.replace(b"4080ea61", f"{i:08x}".encode()) for i in range(count)]
    gc.collect()
    before = len(gc.get_objects())
    cache = [decode_job_event(p) for p in payloads]
    gc.collect()
    after = len(gc.get_objects())
    assert len(cache) == count
    return (after - before - 1) / count  # the list itself is one object


def main() -> None:
    parser = argparse.ArgumentParser(description="Decoding benchmark")
    parser.add_argument("--number", type=int, default=20_000, help="calls per timing run")
    number: int = parser.parse_args().number  # pyright: ignore[reportAny]
    print(f"{'payload':<44} {'us/decode':>10}")
    rows: list[tuple[str, Callable[[], object], int]] = [
        ("job event, real shape (fast path)", lambda: decode_job_event(REAL_EVENT), number),
        ("job event, other shape (validating path)", lambda: decode_job_event(OTHER_SHAPE), number),
        ("capability message", lambda: decode_worker("worker-1", WORKER), number),
    ]
    rows += [(f"refused: {name}", refused(payload), 200) for name, payload in HOSTILE.items()]
    for name, fn, n in rows:
        print(f"{name:<44} {per_call(fn, n):>10.2f}")
    print(f"GC-tracked objects per cached job update: {tracked_objects_per_update():.2f}")


if __name__ == "__main__":
    main()
