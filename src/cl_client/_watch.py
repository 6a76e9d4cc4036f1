"""``client.watch(job_id)``: an async iterator and async context manager over one job's updates.

A plain class (not an async generator), registered with the hub when created, so nothing published
before the first ``__anext__`` is missed. Its mailbox coalesces in-flight updates to the latest
state but always keeps the terminal one; no task runs per watch.
"""

from __future__ import annotations

from collections import deque
from types import TracebackType
from typing import Self

import anyio

from ._errors import ClClientError
from ._hub import JobHub
from ._models import JobUpdate

__all__ = ["JobWatch"]


class _Mailbox:
    """What the hub holds: a bounded, coalescing queue plus a wake-up event."""

    __slots__ = ("done", "error", "pending", "waiter")

    def __init__(self) -> None:
        self.pending: deque[JobUpdate] = deque()
        self.waiter: anyio.Event | None = None
        self.error: ClClientError | None = None
        self.done = False

    def deliver(self, update: JobUpdate) -> None:
        if self.done:
            return
        pending = self.pending
        if pending and not pending[-1].is_terminal and not update.is_terminal:
            pending[-1] = update  # status is state, not a log: keep the newest
        else:
            pending.append(update)
        self._wake()

    def fail(self, error: ClClientError) -> None:
        if not self.done and self.error is None:
            self.error = error
            self._wake()

    def _wake(self) -> None:
        if self.waiter is not None:
            self.waiter.set()
            self.waiter = None


class JobWatch:
    """Updates of one job, ending after its terminal update.

    Use as ``async for update in client.watch(job_id)`` or
    ``async with client.watch(job_id) as watch: async for update in watch: ...``. The job's
    latest known state is delivered first. If the job disappears (deleted, 404) or the client
    closes, iteration raises the corresponding :class:`~cl_client.ClClientError`.
    """

    def __init__(
        self,
        hub: JobHub,
        job_id: str,
        *,
        now: float,
    ) -> None:
        self.job_id = job_id
        self._hub = hub
        self._mailbox = _Mailbox()
        self._latest: JobUpdate | None = None
        hub.add(job_id, self._mailbox, now)

    @property
    def latest(self) -> JobUpdate | None:
        """The last update this watch yielded."""
        return self._latest

    @property
    def closed(self) -> bool:
        return self._mailbox.done

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> JobUpdate:
        mailbox = self._mailbox
        while True:
            if mailbox.pending:
                update = mailbox.pending.popleft()
                self._latest = update
                if update.is_terminal:
                    self._close()
                return update
            if mailbox.done:
                raise StopAsyncIteration
            if mailbox.error is not None:
                error = mailbox.error
                self._close()
                raise error
            waiter = mailbox.waiter = anyio.Event()
            await waiter.wait()

    def _close(self) -> None:
        self._mailbox.done = True
        self._mailbox.pending.clear()
        self._mailbox._wake()
        self._hub.remove(self.job_id, self._mailbox)

    def __del__(self) -> None:
        # A watch dropped without closing unregisters itself: nothing stays watched forever.
        # (__del__ rather than weakref.finalize: four fewer objects per watch for the GC.)
        if not self._mailbox.done:
            self._hub.remove(self.job_id, self._mailbox)

    async def aclose(self) -> None:
        """Stop watching (idempotent). A pending ``__anext__`` ends with StopAsyncIteration."""
        self._close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<JobWatch {self.job_id} {state}>"
