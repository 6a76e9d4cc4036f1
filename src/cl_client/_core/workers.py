"""Worker registry fed by retained capability messages (sans-IO), and ``watch_workers()``.

An empty payload means the worker left. A worker killed hard leaves a stale retained message
behind, so entries age out: a retained message is as old as its payload timestamp says, a live
one counts from when it arrived. A busy worker (``idle_count == 0``) is still present.
"""

from __future__ import annotations

from collections.abc import Iterable

from .mailbox import Mailbox, MailboxSink, Wakeup
from .models import WorkerEvent, WorkerInfo

__all__ = ["WorkerRegistry", "WorkerWatch"]


class WorkerRegistry:
    """worker_id -> WorkerInfo, with ages and change notification."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._workers: dict[str, WorkerInfo] = {}
        self._seen_at: dict[str, float] = {}
        self._watches: list[MailboxSink[WorkerEvent]] = []
        self._changed = Wakeup()

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
        for sink in list(self._watches):
            sink.deliver(event)
        self._changed.wake()

    async def wait_changed(self) -> None:
        """Return after the next change (a cancelled wait leaves nothing behind)."""
        await self._changed.wait()

    def add_watch(self, sink: MailboxSink[WorkerEvent]) -> None:
        """Deliver every change to ``sink`` from now on."""
        self._watches.append(sink)

    def remove_watch(self, sink: MailboxSink[WorkerEvent]) -> None:
        if sink in self._watches:
            self._watches.remove(sink)

    def end_watches(self) -> None:
        """End every worker watch (the client is closing): their iterations stop."""
        for sink in list(self._watches):
            sink.finish()

    def missing(self, needed: Iterable[str]) -> list[str]:
        have = self.capabilities()
        return sorted({cap for cap in needed if cap not in have})


class _WorkerSink(MailboxSink[WorkerEvent]):
    """What the registry holds for a watch: drop-oldest, unregistering itself when it ends."""

    __slots__ = ("registry",)

    def __init__(self, registry: WorkerRegistry, limit: int) -> None:
        super().__init__(limit=limit)
        self.registry = registry

    def on_end(self) -> None:
        self.registry.remove_watch(self)


class WorkerWatch(Mailbox[WorkerEvent]):
    """Worker changes: first one event per known worker, then every change as it happens.

    ``event.info`` is None when a worker leaves or ages out. The mailbox keeps the newest
    ``max_pending`` events (``dropped`` counts the rest). An ``anyio.abc.ObjectReceiveStream``;
    it ends when the client closes, and unregisters when closed or dropped.
    """

    __slots__ = ()

    def __init__(self, registry: WorkerRegistry, max_pending: int = 1000) -> None:
        sink = _WorkerSink(registry, max_pending)
        super().__init__(sink)
        for worker_id, info in registry.workers.items():
            sink.deliver(WorkerEvent(worker_id=worker_id, info=info))
        registry.add_watch(sink)

    @property
    def dropped(self) -> int:
        """Events dropped because the consumer fell ``max_pending`` behind."""
        return self._sink.dropped
