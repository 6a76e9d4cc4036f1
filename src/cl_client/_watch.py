"""``client.watch(job_id)``: an async iterator and async context manager over one job's updates.

A :class:`~cl_client._core.mailbox.Mailbox` (an anyio object receive stream) whose sink is
registered with the hub when the watch is created, so nothing published before the first
``__anext__`` is missed. It coalesces in-flight updates to the latest state but always keeps the
terminal one, after which it ends; no task runs per watch.
"""

from __future__ import annotations

from ._core.hub import JobHub
from ._core.mailbox import Mailbox, MailboxSink
from ._core.models import JobUpdate

__all__ = ["JobWatch"]


def _is_terminal(update: JobUpdate) -> bool:
    return update.is_terminal


class _JobSink(MailboxSink[JobUpdate]):
    """What the hub holds: the coalescing sink, unregistering itself when the watch ends."""

    __slots__ = ("hub", "job_id")

    def __init__(self, hub: JobHub, job_id: str) -> None:
        super().__init__(final=_is_terminal, coalesce=True)
        self.hub = hub
        self.job_id: str = job_id

    def on_end(self) -> None:
        self.hub.remove(self.job_id, self)


class JobWatch(Mailbox[JobUpdate]):
    """Updates of one job, ending after its terminal update.

    Use as ``async for update in client.watch(job_id)`` or
    ``async with client.watch(job_id) as watch: async for update in watch: ...``. The job's
    latest known state is delivered first. If the job disappears (deleted, 404) or the client
    closes, iteration raises the corresponding :class:`~cl_client.ClClientError`.

    A watch is an ``anyio.abc.ObjectReceiveStream``: ``await watch.receive()`` (always a
    checkpoint; ``anyio.EndOfStream`` after the terminal update), ``receive_nowait()``,
    ``aclose()`` and ``statistics()`` work as on anyio's streams. A watch that is dropped
    without being closed unregisters itself.
    """

    __slots__ = ("_latest", "job_id")

    def __init__(
        self,
        hub: JobHub,
        job_id: str,
        *,
        now: float,
    ) -> None:
        sink = _JobSink(hub, job_id)
        super().__init__(sink)
        self.job_id: str = job_id
        self._latest: JobUpdate | None = None
        hub.add(job_id, sink, now)

    @property
    def latest(self) -> JobUpdate | None:
        """The last update this watch yielded."""
        return self._latest

    def receive_nowait(self) -> JobUpdate:
        update = self._sink.take()
        self._latest = update
        return update

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<JobWatch {self.job_id} {state}>"
