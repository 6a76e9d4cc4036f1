"""Callback subscriptions: ``client.subscribe_job_updates(job_id, on_progress=, on_complete=)``.

A subscription is a mailbox sink (drop-oldest, counted; the terminal update is never dropped)
that the hub delivers to. Its callbacks run in the client's task group, never in the hub:

* a :class:`CallbackRunner` (one task per client) calls back every subscription that has work,
  for as long as its callbacks return at once (plain functions);
* a callback that returns an awaitable (a coroutine function), and the ``on_complete`` step (which
  may fetch the final job over HTTP first), move the subscription to a drainer task of its own
  until its mailbox is empty, so a slow async callback delays only its own subscription.

Idle subscriptions cost no task.
"""

from __future__ import annotations

import inspect
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from typing import TypeAlias

import anyio
import anyio.lowlevel

from ._core.errors import ClClientError
from ._core.mailbox import MailboxSink, Wakeup
from ._core.models import JobResponse, JobUpdate

__all__ = ["CallbackRunner", "CallbackSubscription", "OnComplete", "OnProgress"]

logger = logging.getLogger("cl_client")

OnProgress: TypeAlias = Callable[[JobUpdate], Awaitable[None] | None]
"""Called with every update of the job, the terminal one included (sync or async)."""
OnComplete: TypeAlias = Callable[[JobResponse], Awaitable[None] | None]
"""Called once with the final JobResponse (output or error included), sync or async."""


_ROUND = 256
"""Subscriptions the runner calls back before it lets other tasks run."""


def _is_terminal(update: JobUpdate) -> bool:
    return update.is_terminal


class CallbackRunner:
    """Calls back the subscriptions that have work, in one task (``run``)."""

    def __init__(self) -> None:
        self._ready: deque[CallbackSubscription] = deque()
        self._wakeup = Wakeup()

    def schedule(self, subscription: CallbackSubscription) -> None:
        self._ready.append(subscription)
        self._wakeup.wake()

    async def run(self) -> None:
        ready = self._ready
        while True:
            if not ready:
                await self._wakeup.wait()
                continue
            for _ in range(min(len(ready), _ROUND)):
                ready.popleft().run_inline()
            if ready:  # more to call back: the other tasks run first (else waiting yields)
                await anyio.lowlevel.checkpoint()


class CallbackSubscription(MailboxSink[JobUpdate]):
    """One subscription's mailbox and drainer. Created by ComputeClient.

    The hub delivers to it; ``finished(self)`` runs once when it stops receiving (terminal
    update, failure, cancel), while the drainer goes on calling back what is pending.
    """

    __slots__ = (
        "_finished",
        "_resolve",
        "_running",
        "_schedule",
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
        schedule: Callable[[CallbackSubscription], None] | None = None,
    ) -> None:
        super().__init__(limit=max_pending, final=_is_terminal)
        self.subscription_id = subscription_id
        self.job_id = job_id
        self.on_progress = on_progress
        self.on_complete = on_complete
        self._spawn = spawn
        self._resolve = resolve
        self._finished = finished
        self._schedule = schedule
        self._running = False
        """Scheduled with the runner, or a drainer task is running."""

    @property
    def active(self) -> bool:
        """Still receiving updates or calling back."""
        return not self.closed and (not self.ended or self._running or self.pending > 0)

    def on_end(self) -> None:
        self._finished(self)  # stop receiving; the drainer still runs the callbacks

    def wake(self) -> None:
        # Called whenever there is something new for the consumer: have it called back.
        super().wake()
        if not self._running and not self.closed:
            self._running = True
            if self._schedule is not None:
                self._schedule(self)
            else:
                self._spawn(self._drain)

    def cancel(self) -> None:
        """Stop calling back (queued updates are discarded)."""
        self.close()

    # -- calling back -----------------------------------------------------------------------
    def _next(self) -> JobUpdate | None:
        """The next pending update, or None when there is nothing (more) to call back."""
        if not self.ready and not self.closed:
            return None  # (the usual end of a round: asked, not raised)
        try:
            return self.take()
        except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
            return None
        except ClClientError as exc:
            logger.warning(
                "subscription %s for job %s ended: %s", self.subscription_id, self.job_id, exc
            )
            return None

    def run_inline(self) -> None:
        """Call back what is pending while the callbacks return at once (the runner's part)."""
        while not self.closed:
            update = self._next()
            if update is None:
                break
            result: object = None
            if self.on_progress is not None:
                try:
                    result = self.on_progress(update)
                except Exception:
                    self._log_progress_error()
            if (result is not None and inspect.isawaitable(result)) or (
                self.on_complete is not None and update.is_terminal
            ):
                # the rest waits for something: it goes on in a task of its own
                self._spawn(partial(self._drain, update, result))
                return
        self._running = False

    async def _drain(self, update: JobUpdate | None = None, result: object = None) -> None:
        try:
            if update is not None:
                await self._finish_update(update, result)
            while not self.closed:
                update = self._next()
                if update is None:
                    return
                result = None
                if self.on_progress is not None:
                    try:
                        result = self.on_progress(update)
                    except Exception:
                        self._log_progress_error()
                await self._finish_update(update, result)
        finally:
            self._running = False

    async def _finish_update(self, update: JobUpdate, result: object) -> None:
        if inspect.isawaitable(result):
            try:
                await result
            except Exception:
                self._log_progress_error()
        if update.is_terminal and self.on_complete is not None and not self.closed:
            try:
                job = await self._resolve(update)
            except ClClientError as exc:
                logger.warning(
                    "on_complete of subscription %s not called: the final state of job %s "
                    "could not be confirmed: %s",
                    self.subscription_id,
                    self.job_id,
                    exc,
                )
                return
            await self._guarded_complete(self.on_complete, job)

    def _log_progress_error(self) -> None:
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
