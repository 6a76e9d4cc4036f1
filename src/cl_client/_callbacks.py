"""Callback subscriptions: ``client.subscribe_job_updates(job_id, on_progress=, on_complete=)``.

Each subscription has a bounded mailbox (drop-oldest, counted; the terminal update is never
dropped). A drainer task is started in the client's task group only while the mailbox has work,
so a slow callback delays only its own subscription, and idle subscriptions cost no task.
"""

from __future__ import annotations

import inspect
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import TypeAlias

from ._errors import ClClientError
from ._models import JobResponse, JobUpdate

__all__ = ["CallbackSubscription", "OnComplete", "OnProgress"]

logger = logging.getLogger("cl_client")

OnProgress: TypeAlias = Callable[[JobUpdate], Awaitable[None] | None]
"""Called with every update of the job, the terminal one included (sync or async)."""
OnComplete: TypeAlias = Callable[[JobResponse], Awaitable[None] | None]
"""Called once with the final JobResponse (output or error included), sync or async."""


async def _call(callback: Callable[[JobUpdate], Awaitable[None] | None], arg: JobUpdate) -> None:
    result = callback(arg)
    if inspect.isawaitable(result):
        await result


class CallbackSubscription:
    """One subscription's mailbox and drainer. Created by ComputeClient."""

    def __init__(
        self,
        subscription_id: str,
        job_id: str,
        *,
        on_progress: OnProgress | None,
        on_complete: OnComplete | None,
        spawn: Callable[[Callable[[], Coroutine[object, object, None]]], None],
        resolve: Callable[[JobUpdate], Awaitable[JobResponse]],
        finished: Callable[[CallbackSubscription], None],
        max_pending: int = 1000,
    ) -> None:
        self.subscription_id = subscription_id
        self.job_id = job_id
        self.on_progress = on_progress
        self.on_complete = on_complete
        self.dropped = 0
        """Updates dropped because the callbacks fell more than ``max_pending`` behind."""
        self._spawn = spawn
        self._resolve = resolve
        self._finished = finished
        self._pending: deque[JobUpdate] = deque()
        self._max_pending = max_pending
        self._running = False
        self._cancelled = False
        self._terminal_seen = False

    @property
    def active(self) -> bool:
        return not self._cancelled and not (self._terminal_seen and not self._running)

    # -- Subscriber protocol (called synchronously by the hub) -----------------------------
    def deliver(self, update: JobUpdate) -> None:
        if self._cancelled or self._terminal_seen:
            return
        if update.is_terminal:
            self._terminal_seen = True
            self._finished(self)  # stop receiving; the drainer still runs the callbacks
        elif len(self._pending) >= self._max_pending:
            self._pending.popleft()
            self.dropped += 1
        self._pending.append(update)
        self._start()

    def fail(self, error: ClClientError) -> None:
        if not self._cancelled and not self._terminal_seen:
            logger.warning(
                "subscription %s for job %s ended: %s", self.subscription_id, self.job_id, error
            )
            self._terminal_seen = True
            self._finished(self)

    def cancel(self) -> None:
        """Stop calling back (queued updates are discarded)."""
        self._cancelled = True
        self._pending.clear()

    # -- draining --------------------------------------------------------------------------
    def _start(self) -> None:
        if not self._running:
            self._running = True
            self._spawn(self._drain)

    async def _drain(self) -> None:
        try:
            while self._pending and not self._cancelled:
                update = self._pending.popleft()
                if self.on_progress is not None:
                    await self._guarded_progress(self.on_progress, update)
                if update.is_terminal and self.on_complete is not None and not self._cancelled:
                    job = await self._resolve(update)
                    await self._guarded_complete(self.on_complete, job)
        finally:
            self._running = False

    async def _guarded_progress(self, callback: OnProgress, update: JobUpdate) -> None:
        try:
            await _call(callback, update)
        except Exception:
            logger.exception(
                "on_progress callback of subscription %s (job %s) raised",
                self.subscription_id,
                self.job_id,
            )

    async def _guarded_complete(self, callback: OnComplete, job: JobResponse) -> None:
        try:
            result = callback(job)
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception(
                "on_complete callback of subscription %s (job %s) raised",
                self.subscription_id,
                self.job_id,
            )

    def __repr__(self) -> str:
        return f"<CallbackSubscription {self.subscription_id} job={self.job_id}>"
