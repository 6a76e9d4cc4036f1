"""Callback subscriptions: ``client.subscribe_job_updates(job_id, on_progress=, on_complete=)``.

A subscription is a mailbox sink (drop-oldest, counted; the terminal update is never dropped)
that the hub delivers to, with a drainer instead of a consumer task: the drainer is started in
the client's task group only while the mailbox has work, so a slow callback delays only its own
subscription, and idle subscriptions cost no task.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import TypeAlias

import anyio

from ._errors import ClClientError
from ._mailbox import MailboxSink
from ._models import JobResponse, JobUpdate

__all__ = ["CallbackSubscription", "OnComplete", "OnProgress"]

logger = logging.getLogger("cl_client")

OnProgress: TypeAlias = Callable[[JobUpdate], Awaitable[None] | None]
"""Called with every update of the job, the terminal one included (sync or async)."""
OnComplete: TypeAlias = Callable[[JobResponse], Awaitable[None] | None]
"""Called once with the final JobResponse (output or error included), sync or async."""


def _is_terminal(update: JobUpdate) -> bool:
    return update.is_terminal


class CallbackSubscription(MailboxSink[JobUpdate]):
    """One subscription's mailbox and drainer. Created by ComputeClient.

    The hub delivers to it; ``finished(self)`` runs once when it stops receiving (terminal
    update, failure, cancel), while the drainer goes on calling back what is pending.
    """

    __slots__ = (
        "_finished",
        "_resolve",
        "_running",
        "_spawn",
        "job_id",
        "on_complete",
        "on_progress",
        "subscription_id",
    )

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
        super().__init__(limit=max_pending, final=_is_terminal)
        self.subscription_id = subscription_id
        self.job_id = job_id
        self.on_progress = on_progress
        self.on_complete = on_complete
        self._spawn = spawn
        self._resolve = resolve
        self._finished = finished
        self._running = False

    @property
    def active(self) -> bool:
        """Still receiving updates or calling back."""
        return not self.closed and (not self.ended or self._running or self.pending > 0)

    def on_end(self) -> None:
        self._finished(self)  # stop receiving; the drainer still runs the callbacks

    def wake(self) -> None:
        # Called whenever there is something new for the consumer: start the drainer.
        super().wake()
        if not self._running and not self.closed:
            self._running = True
            self._spawn(self._drain)

    def cancel(self) -> None:
        """Stop calling back (queued updates are discarded)."""
        self.close()

    # -- draining --------------------------------------------------------------------------
    async def _drain(self) -> None:
        try:
            while not self.closed:
                try:
                    update = self.take()
                except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                    return
                except ClClientError as exc:
                    logger.warning(
                        "subscription %s for job %s ended: %s",
                        self.subscription_id,
                        self.job_id,
                        exc,
                    )
                    return
                if self.on_progress is not None:
                    await self._guarded_progress(self.on_progress, update)
                if update.is_terminal and self.on_complete is not None and not self.closed:
                    job = await self._resolve(update)
                    await self._guarded_complete(self.on_complete, job)
        finally:
            self._running = False

    async def _guarded_progress(self, callback: OnProgress, update: JobUpdate) -> None:
        try:
            result = callback(update)
            if inspect.isawaitable(result):
                await result
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
