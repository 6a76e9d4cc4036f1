"""Parallel helpers for workflow scripts: many calls under a concurrency limit, results as they
complete, failures reported per item without cancelling the others.

::

    async with run_parallel(client.hash.run, paths, limit=8) as results:
        async for outcome in results:          # in completion order
            if outcome.ok:
                print(outcome.item, outcome.value.hash_value)
            else:
                print(outcome.item, "failed:", outcome.error)

    outcomes = await gather_parallel(client.hash.run, paths, limit=8)   # in input order

And for the callback pattern (register every callback, submit everything, await every
completion)::

    done = JobCompletions()
    for path in paths:
        done.expect(await client.hash.compute(path, on_complete=done.on_complete))
    jobs = await done.wait_all()               # job_id -> final JobResponse
"""

from __future__ import annotations

import math
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Generic, Self, TypeVar, cast

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .._core.errors import JobFailedError, ParameterError
from .._core.groups import unwrap_group
from .._core.mailbox import Wakeup
from .._core.models import JobResponse

__all__ = ["JobCompletions", "Outcome", "ParallelResults", "gather_parallel", "run_parallel"]

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Outcome(Generic[T, R]):
    """What one item gave: ``value`` on success, ``error`` (the exception) on failure."""

    index: int
    """The item's position in the input."""
    item: T
    value: R | None = None
    error: Exception | None = None

    @property
    def ok(self) -> bool:
        """True if the call returned (``value`` is its result)."""
        return self.error is None

    def unwrap(self) -> R:
        """The value, or raise the item's exception."""
        if self.error is not None:
            raise self.error
        return cast(R, self.value)


class ParallelResults(Generic[T, R]):
    """An async iterator of :class:`Outcome`, in the order the calls finish."""

    def __init__(self, receive: MemoryObjectReceiveStream[Outcome[T, R]]) -> None:
        self._receive = receive

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Outcome[T, R]:
        try:
            return await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise StopAsyncIteration from None


def _check_limit(limit: object) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ParameterError(f"limit must be an integer >= 1, got {limit!r}")
    return limit


async def _worker(
    fn: Callable[[T], Awaitable[R]],
    source: Iterable[tuple[int, T]],
    send: MemoryObjectSendStream[Outcome[T, R]],
) -> None:
    async with send:
        for index, item in source:
            outcome: Outcome[T, R]
            try:
                value = await fn(item)
            except Exception as exc:
                outcome = Outcome(index, item, error=exc)
            else:
                outcome = Outcome(index, item, value=value)
            try:
                send.send_nowait(outcome)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                # The consumer left (the block ended, or was cancelled) while this call was
                # finishing a step that cancellation does not interrupt (a shielded cleanup, a
                # worker thread): nobody wants the outcome any more.
                return


@asynccontextmanager
async def run_parallel(
    fn: Callable[[T], Awaitable[R]], items: Iterable[T], *, limit: int = 8
) -> AsyncGenerator[ParallelResults[T, R]]:
    """Call ``fn(item)`` for every item, at most ``limit`` at a time; iterate the outcomes.

    ``items`` is consumed lazily. An exception from one call becomes that item's
    ``Outcome.error`` and does not stop the others. Leaving the ``async with`` block cancels the
    calls that have not finished.
    """
    workers = _check_limit(limit)
    send, receive = anyio.create_memory_object_stream[Outcome[T, R]](math.inf)
    source = enumerate(items)
    try:
        async with anyio.create_task_group() as tg:
            with send:
                for _ in range(workers):
                    tg.start_soon(_worker, fn, source, send.clone())
            try:
                with receive:
                    yield ParallelResults(receive)
            finally:
                tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        raise unwrap_group(group) from None


async def gather_parallel(
    fn: Callable[[T], Awaitable[R]], items: Iterable[T], *, limit: int = 8
) -> list[Outcome[T, R]]:
    """Like :func:`run_parallel`, but wait for everything and return the outcomes in input
    order."""
    outcomes: list[Outcome[T, R]] = []
    async with run_parallel(fn, items, limit=limit) as results:
        async for outcome in results:
            outcomes.append(outcome)
    return sorted(outcomes, key=lambda o: o.index)


class JobCompletions:
    """Collects ``on_complete`` callbacks of many jobs and waits until all of them came.

    Pass :meth:`on_complete` as the callback of every submission and :meth:`expect` each
    returned job (a completion that arrives before ``expect`` is kept). Put a deadline around
    :meth:`wait_all` with ``anyio.fail_after``.
    """

    def __init__(self) -> None:
        self._expected: dict[str, None] = {}
        self._done: dict[str, JobResponse] = {}
        self._changed = Wakeup()

    def __repr__(self) -> str:
        return f"<JobCompletions expected={len(self._expected)} done={len(self.done)}>"

    def on_complete(self, job: JobResponse) -> None:
        """The callback: records the final JobResponse of a job."""
        self._done[job.job_id] = job
        self._changed.wake()

    def expect(self, job: JobResponse | str) -> None:
        """Wait for this job too."""
        self._expected[job if isinstance(job, str) else job.job_id] = None

    @property
    def pending(self) -> list[str]:
        """Expected jobs not completed yet."""
        return [job_id for job_id in self._expected if job_id not in self._done]

    @property
    def done(self) -> dict[str, JobResponse]:
        """The expected jobs completed so far, by id, in the order they were expected."""
        return {job_id: self._done[job_id] for job_id in self._expected if job_id in self._done}

    @property
    def failed(self) -> list[JobResponse]:
        """Completed jobs that ended in error."""
        return [job for job in self.done.values() if job.is_failed]

    async def wait_all(self, *, raise_on_error: bool = False) -> dict[str, JobResponse]:
        """Wait until every expected job completed; return them by id (in ``expect`` order).

        With ``raise_on_error``, raise JobFailedError for the first failed job.
        """
        while self.pending:
            await self._changed.wait()
        if raise_on_error and self.failed:
            raise JobFailedError(self.failed[0])
        return self.done
