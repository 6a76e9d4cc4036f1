"""Worker registry fed by retained capability messages (sans-IO), and ``watch_workers()``.

An empty payload means the worker left. A worker killed hard leaves a stale retained message
behind, so entries age out: a retained message is as old as its payload timestamp says, a live
one counts from when it arrived. A busy worker (``idle_count == 0``) is still present.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Self

import anyio

from ._models import WorkerEvent, WorkerInfo

__all__ = ["WorkerRegistry", "WorkerWatch"]


class WorkerRegistry:
    """worker_id -> WorkerInfo, with ages and change notification."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._workers: dict[str, WorkerInfo] = {}
        self._seen_at: dict[str, float] = {}
        self._listeners: list[Callable[[WorkerEvent], None]] = []
        self._waiters: list[anyio.Event] = []

    @property
    def workers(self) -> dict[str, WorkerInfo]:
        return dict(self._workers)

    def capabilities(self) -> set[str]:
        return {cap for info in self._workers.values() for cap in info.capabilities}

    def apply(
        self, worker_id: str, info: WorkerInfo | None, *, retained: bool, now_ms: int
    ) -> None:
        """A capability message arrived (``info`` None: the worker left)."""
        if info is None:
            self._remove(worker_id)
            return
        seen = now_ms
        if retained and info.timestamp is not None:
            seen = min(now_ms, info.timestamp)
        if now_ms - seen > self.ttl * 1000:
            self._remove(worker_id)  # a stale retained message from a worker that died
            return
        self._workers[worker_id] = info
        self._seen_at[worker_id] = seen
        self._emit(WorkerEvent(worker_id=worker_id, info=info))

    def prune(self, now_ms: int) -> list[str]:
        """Remove workers not heard from within the TTL; return their ids."""
        limit = self.ttl * 1000
        gone = [wid for wid, seen in self._seen_at.items() if now_ms - seen > limit]
        for worker_id in gone:
            self._remove(worker_id)
        return gone

    def clear(self) -> None:
        for worker_id in list(self._workers):
            self._remove(worker_id)

    def _remove(self, worker_id: str) -> None:
        self._seen_at.pop(worker_id, None)
        if self._workers.pop(worker_id, None) is not None:
            self._emit(WorkerEvent(worker_id=worker_id, info=None))

    def _emit(self, event: WorkerEvent) -> None:
        for listener in list(self._listeners):
            listener(event)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.set()

    async def wait_changed(self) -> None:
        """Return after the next change."""
        waiter = anyio.Event()
        self._waiters.append(waiter)
        await waiter.wait()

    def listen(self, listener: Callable[[WorkerEvent], None]) -> Callable[[], None]:
        self._listeners.append(listener)

        def stop() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return stop

    def missing(self, needed: Iterable[str]) -> list[str]:
        have = self.capabilities()
        return sorted({cap for cap in needed if cap not in have})


class WorkerWatch:
    """Worker changes: first one event per known worker, then every change as it happens.

    ``event.info`` is None when a worker leaves or ages out. The mailbox keeps the newest
    ``max_pending`` events (``dropped`` counts the rest).
    """

    def __init__(self, registry: WorkerRegistry, max_pending: int = 1000) -> None:
        self._pending: deque[WorkerEvent] = deque(
            (WorkerEvent(worker_id=wid, info=info) for wid, info in registry.workers.items()),
        )
        self._max_pending = max_pending
        self._waiter: anyio.Event | None = None
        self._closed = False
        self.dropped = 0
        self._stop = registry.listen(self._deliver)

    def _deliver(self, event: WorkerEvent) -> None:
        if len(self._pending) >= self._max_pending:
            self._pending.popleft()
            self.dropped += 1
        self._pending.append(event)
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None:
            self._waiter.set()
            self._waiter = None

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> WorkerEvent:
        while True:
            if self._pending:
                return self._pending.popleft()
            if self._closed:
                raise StopAsyncIteration
            waiter = self._waiter = anyio.Event()
            await waiter.wait()

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._stop()
            self._pending.clear()
            self._wake()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
