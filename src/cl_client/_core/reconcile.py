"""Reconciliation: ``GET /jobs/{id}`` for watched jobs, on a schedule per job state, on a budget.

MQTT is the fast path, not the guarantee: the real server publishes no event when a job fails,
brokers drop QoS 1 messages under load, and a reconnecting subscriber misses what was published
meanwhile. So the client checks watched jobs over HTTP, but what it asks of the server grows with
the work in progress, not with the number of jobs watched:

* a job the client knows nothing of is checked at once;
* a ``processing`` job (at most one per busy worker) is checked ``interval`` after its last
  accepted state change, then every ``interval``, and at once when a worker offering its task
  type announces ``idle_count`` going 0 -> 1 (the real worker does so right after every job,
  failed ones included: the one signal a silent failure leaves). Only jobs that reached
  ``processing`` after that worker went busy can be the one it just finished;
* a ``queued`` job can only change silently if its ``processing`` event was lost; while the feed
  is healthy it is checked ``interval`` after its last state change, then at ages that double
  (each interval as long as the job's age), up to ``max_interval``;
* after a reconnect every watched job is checked once (processing ones first); while the feed is
  down, queued jobs are checked every ``interval`` like processing ones;
* without MQTT (polling), the same with the poll settings: ``poll_interval`` growing by
  ``poll_backoff`` up to ``poll_max_interval`` for queued jobs, ``poll_interval`` otherwise.

Every check passes through one global budget: at most ``rate`` requests per second (a token
bucket) and ``concurrency`` in flight. When the budget is short, jobs wait in a ready queue
ordered by how likely they are to have changed: unknown jobs, then hinted ones (a worker went
idle, a reconnect, processing jobs after a reconnect), processing jobs, queued jobs after a
reconnect, queued jobs; the longest overdue first within each class.

Nothing scans every watch: deadlines live in a heap, updated lazily. An accepted change only
writes ``changed_at`` (and pushes a new deadline when it comes sooner than the one queued); a
deadline that pops is recomputed from the job's current state and pushed back if it moved.

:class:`ReconcileSchedule` is the sans-IO part (pure and synchronous, tested with a fake clock);
``cl_client._engine.Reconciler`` runs it: one dispatcher task and one short task per request.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from .hub import JobHub, JobInterest
from .lifecycle import QUEUED_RANK, TERMINAL_RANK, is_queued, rank
from .models import JobResponse, JobUpdate, WorkerInfo
from .settings import ClientSettings

__all__ = [
    "HINT",
    "NEW",
    "PROCESSING",
    "QUEUED",
    "RECONNECT",
    "RateBudget",
    "ReconcileSchedule",
    "SchedulePolicy",
]

logger = logging.getLogger("cl_client")

# Ready classes: why a job is checked, the most likely to have changed first.
NEW = 0
"""Nothing is known of the job (a new watch, or its first check failed)."""
HINT = 1
"""A worker offering its type went idle, a reconnect found it processing, or news came while a
check was in flight."""
PROCESSING = 2
"""A processing job's periodic check."""
RECONNECT = 3
"""A queued job, after a reconnect."""
QUEUED = 4
"""A queued job's periodic check."""
_NOT_READY = -1


@dataclass(frozen=True, slots=True)
class SchedulePolicy:
    """The schedule's knobs, in seconds (see the module docstring)."""

    interval: float
    max_interval: float
    growth: float
    """A queued job's next check comes at ``growth`` times its age (at least ``interval``)."""
    rate: float
    concurrency: int
    backoff_needs_feed: bool
    """Queued jobs back off only while the MQTT feed is up (False: always, as polling does)."""

    @property
    def burst(self) -> float:
        """Tokens the budget holds when idle: a quarter second's worth, at least one."""
        return max(1.0, self.rate / 4)

    @classmethod
    def from_settings(cls, settings: ClientSettings) -> SchedulePolicy:
        if settings.mqtt_enabled:
            return cls(
                interval=settings.reconcile_interval,
                max_interval=max(settings.reconcile_interval, settings.reconcile_max_interval),
                growth=2.0,
                rate=settings.reconcile_rate,
                concurrency=settings.reconcile_concurrency,
                backoff_needs_feed=True,
            )
        return cls(
            interval=settings.poll_interval,
            max_interval=max(settings.poll_interval, settings.poll_max_interval),
            growth=settings.poll_backoff,
            rate=settings.reconcile_rate,
            concurrency=settings.reconcile_concurrency,
            backoff_needs_feed=False,
        )


class RateBudget:
    """A token bucket: ``rate`` tokens per second, holding at most ``burst``."""

    __slots__ = ("_at", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._at: float | None = None

    def _refill(self, now: float) -> None:
        if self._at is not None and now > self._at:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        if self._at is None or now > self._at:
            self._at = now

    def wait_time(self, now: float) -> float:
        """Seconds until a token is available (0: now)."""
        self._refill(now)
        missing = 1 - self._tokens
        return 0.0 if missing <= 1e-9 else missing / self.rate

    def take(self, now: float) -> None:
        self._refill(now)
        self._tokens -= 1


@dataclass(frozen=True, slots=True)
class _WorkerSeen:
    idle_count: int
    busy_since: float
    capabilities: frozenset[str]


class ReconcileSchedule:
    """Which watched job to check next, and when (sans-IO: give it the time, it never waits).

    The hub reports watches and accepted changes (it calls ``watched``, ``changed``,
    ``unwatched``); the engine reports the feed (``feed_up``, ``feed_down``), worker capability
    messages (``worker_update``) and aged-out workers (``forget_worker``); the client reports
    submissions (``remember_task_type``). The dispatcher asks
    ``next_action(now)``, takes jobs with ``pop(now)`` and reports with ``finished``.
    """

    def __init__(
        self,
        hub: JobHub,
        policy: SchedulePolicy,
        *,
        task_type_memory: int = 10_000,
    ) -> None:
        self._hub = hub
        self.policy = policy
        self.budget = RateBudget(policy.rate, policy.burst)
        self.feed_healthy = False
        self.in_flight = 0
        self.on_sooner: Callable[[float], None] | None = None
        """Called with a time when a check may be due before the one the dispatcher waits for."""
        self._timers: list[tuple[float, int, JobInterest]] = []
        self._ready: list[tuple[int, float, int, JobInterest]] = []
        self._seq = itertools.count()
        self._processing: set[JobInterest] = set()
        self._workers: dict[str, _WorkerSeen] = {}
        self._task_types: OrderedDict[str, str] = OrderedDict()
        self._task_type_memory = task_type_memory
        hub.listener = self

    # -- what the schedule holds (for tests and statistics) --------------------------------
    @property
    def ready_count(self) -> int:
        """Entries in the ready queue (stale ones included until they are skipped)."""
        return len(self._ready)

    @property
    def timer_count(self) -> int:
        """Entries in the timer queue (stale ones included until they pop)."""
        return len(self._timers)

    # -- hub listener ----------------------------------------------------------------------
    def watched(self, interest: JobInterest, latest: JobUpdate | None, now: float) -> None:
        interest.task_type = self._task_types.get(interest.job_id)
        if latest is None:
            self._make_ready(interest, NEW, now)
        elif not latest.is_terminal:
            queued = is_queued(latest.status)
            self._note_queued(interest, queued)
            if not queued and self._idle_worker_for(interest.task_type):
                # Processing, yet a worker that could be running it is idle: it may have just
                # finished, silently, before the watch began (submit, then watch, races).
                self._make_ready(interest, HINT, now)
            else:
                self._push_timer(interest, self._deadline(interest, queued))

    def changed(self, interest: JobInterest, update: JobUpdate, now: float) -> None:
        if update.job is not None and update.job.task_type:
            interest.task_type = update.job.task_type
        status_rank = rank(update.status)  # (once: this runs for every accepted update)
        if status_rank == TERMINAL_RANK:
            self._processing.discard(interest)
            return
        queued = status_rank == QUEUED_RANK
        self._note_queued(interest, queued)
        if interest.busy:
            return  # the check in flight reschedules it from the new clock
        # News supersedes a check waiting for the budget: the clock restarts from this change
        # (a job that just went processing must not wait in line with the queued ones).
        interest.ready = _NOT_READY
        deadline = self._deadline(interest, queued)
        if deadline < interest.due:
            self._push_timer(interest, deadline)

    def unwatched(self, interest: JobInterest) -> None:
        self._processing.discard(interest)
        interest.ready = _NOT_READY
        interest.due = math.inf

    def _note_queued(self, interest: JobInterest, queued: bool) -> None:
        if queued:
            self._processing.discard(interest)
        else:
            self._processing.add(interest)

    # -- what the engine and the client report -------------------------------------------------
    def remember_task_type(self, job_id: str, task_type: str) -> None:
        """A job this client submitted: its task type decides which idle workers concern it."""
        types = self._task_types
        types[job_id] = task_type
        types.move_to_end(job_id)
        while len(types) > self._task_type_memory:
            types.popitem(last=False)

    def feed_up(self, now: float, *, reconnect: bool) -> None:
        """The MQTT feed is (again) connected; after a reconnect, check every watched job once."""
        self.feed_healthy = True
        if not reconnect:
            return
        for interest in list(self._hub.interests()):
            status = self._hub.live_status(interest)
            if status is None:
                continue
            if not status:
                cls = NEW
            elif is_queued(status):
                cls = RECONNECT
            else:
                cls = HINT
            self._make_ready(interest, cls, now)

    def feed_down(self, now: float) -> None:
        """The MQTT feed is down: queued jobs stop backing off until it is back."""
        self.feed_healthy = False
        if not self.policy.backoff_needs_feed:
            return
        for interest in self._hub.interests():
            if interest.busy or interest.ready != _NOT_READY:
                continue
            status = self._hub.live_status(interest)
            if status is not None:
                deadline = self._deadline(interest, is_queued(status))
                if deadline < interest.due:
                    self._push_timer(interest, deadline)

    def worker_update(
        self, worker_id: str, info: WorkerInfo | None, *, retained: bool, now: float
    ) -> None:
        """A capability message (``info`` None: the worker left). A worker going idle may have
        just finished, or silently failed, a job of ours: check the candidates at once."""
        previous = self._workers.get(worker_id)
        if info is None:
            if previous is not None:
                del self._workers[worker_id]
                if previous.idle_count == 0:
                    self._went_idle(previous.capabilities, previous.busy_since, now)
            return
        capabilities = frozenset(info.capabilities)
        if info.idle_count <= 0:
            if previous is None:
                # A retained message: busy since some time we cannot know.
                since = -math.inf if retained else now
            elif previous.idle_count > 0:
                since = now
            else:
                since = previous.busy_since
            self._workers[worker_id] = _WorkerSeen(0, since, capabilities)
            return
        self._workers[worker_id] = _WorkerSeen(info.idle_count, -math.inf, capabilities)
        if previous is not None and info.idle_count > previous.idle_count:
            since = previous.busy_since if previous.idle_count == 0 else -math.inf
            self._went_idle(capabilities | previous.capabilities, since, now)

    def forget_worker(self, worker_id: str) -> None:
        """The worker aged out."""
        self._workers.pop(worker_id, None)

    def _idle_worker_for(self, task_type: str | None) -> bool:
        return any(
            seen.idle_count > 0 and (task_type is None or task_type in seen.capabilities)
            for seen in self._workers.values()
        )

    def _went_idle(self, capabilities: frozenset[str], since: float, now: float) -> None:
        # Only a job that reached processing after the worker went busy can be the one it
        # finished (its busy announcement precedes the job's processing event on the wire).
        for interest in list(self._processing):
            if interest.changed_at >= since and (
                interest.task_type is None or interest.task_type in capabilities
            ):
                self._make_ready(interest, HINT, now)

    # -- the dispatcher's side -------------------------------------------------------------
    def next_action(self, now: float) -> float:
        """Seconds until a check may start (0: call ``pop`` now; inf: nothing to do until told)."""
        self._promote(now)
        ready = self._ready
        while ready:
            cls, _, _, interest = ready[0]
            if interest.ready == cls and self._hub.live_status(interest) is not None:
                break
            heapq.heappop(ready)
            if interest.ready == cls:
                interest.ready = _NOT_READY
        if not ready:
            return self._timers[0][0] - now if self._timers else math.inf
        if self.in_flight >= self.policy.concurrency:
            return math.inf
        return self.budget.wait_time(now)

    def pop(self, now: float) -> JobInterest:
        """Take the job to check now (after ``next_action`` returned 0); spends one token."""
        _, _, _, interest = heapq.heappop(self._ready)
        interest.ready = _NOT_READY
        interest.busy = True
        interest.again = False
        self.in_flight += 1
        self.budget.take(now)
        return interest

    def finished(self, interest: JobInterest, now: float, job: JobResponse | None) -> None:
        """The check of ``interest`` ended (``job``: what the server said, if it answered)."""
        self.in_flight -= 1
        interest.busy = False
        interest.checked_at = now
        if job is not None and job.task_type:
            interest.task_type = job.task_type
        status = self._hub.live_status(interest)
        if status is not None:
            if interest.again:
                interest.again = False
                self._make_ready(interest, HINT, now)
            else:
                self._push_timer(interest, self._deadline(interest, is_queued(status)))
        if self.on_sooner is not None:
            self.on_sooner(now)  # a slot is free

    # -- internals -------------------------------------------------------------------------
    def _deadline(self, interest: JobInterest, queued: bool) -> float:
        """When the job is next due a check: a queued job backs off, the others do not."""
        policy = self.policy
        since = max(interest.changed_at, interest.checked_at)
        if queued and (self.feed_healthy or not policy.backoff_needs_feed):
            age = since - interest.changed_at
            return since + min(policy.max_interval, max(policy.interval, age * (policy.growth - 1)))
        return since + policy.interval

    def _push_timer(self, interest: JobInterest, deadline: float) -> None:
        interest.due = deadline
        heapq.heappush(self._timers, (deadline, next(self._seq), interest))
        if self.on_sooner is not None:
            self.on_sooner(deadline)

    def _make_ready(self, interest: JobInterest, cls: int, now: float) -> None:
        if interest.busy:
            if cls <= HINT:
                interest.again = True
            return
        if interest.ready != _NOT_READY and interest.ready <= cls:
            return
        interest.ready = cls
        interest.due = math.inf
        heapq.heappush(self._ready, (cls, now, next(self._seq), interest))
        if self.on_sooner is not None:
            self.on_sooner(now)

    def _promote(self, now: float) -> None:
        timers = self._timers
        while timers and timers[0][0] <= now:
            due, _, interest = heapq.heappop(timers)
            if interest.due != due or interest.busy or interest.ready != _NOT_READY:
                continue  # superseded
            interest.due = math.inf
            status = self._hub.live_status(interest)
            if status is None:
                continue
            queued = is_queued(status)
            deadline = self._deadline(interest, queued)
            if deadline > now:
                self._push_timer(interest, deadline)  # news since: the clock moved
                continue
            if not status:
                cls = NEW
            elif queued:
                cls = QUEUED
            else:
                cls = PROCESSING
            interest.ready = cls
            heapq.heappush(self._ready, (cls, due, next(self._seq), interest))
