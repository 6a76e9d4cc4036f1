"""The hub: synchronous fan-out of job updates to subscribers (sans-IO).

The MQTT reader, the reconciler and the submit path all call :meth:`JobHub.publish`. It applies
the lifecycle rules against the latest known state of the job and hands accepted updates to the
job's subscribers in O(1) per subscriber. Subscribers only enqueue: the hub never awaits anyone.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from .errors import ClClientError
from .lifecycle import accepts, canonical_status
from .models import JobUpdate

__all__ = ["HubStats", "InterestListener", "JobHub", "JobInterest", "Subscriber"]

logger = logging.getLogger("cl_client")


class Subscriber(Protocol):
    """Something that wants a job's updates: a watch's mailbox sink or a callback subscription."""

    def deliver(self, update: JobUpdate, /) -> None: ...

    def fail(self, error: ClClientError, /) -> None: ...


@dataclass
class HubStats:
    """The hub's running counters (the client publishes a snapshot: ClientStatistics)."""

    published: int = 0
    accepted: int = 0
    dropped: int = 0
    """Duplicates, out-of-order updates and updates after a terminal state."""


class JobInterest:
    """A watched job: its subscribers, and the reconcile schedule's bookkeeping (``reconcile``).

    One object per watched job (slots, so it stays small): the hub owns ``subscribers`` and
    ``changed_at``, the reconcile schedule the rest.
    """

    __slots__ = (
        "again",
        "busy",
        "changed_at",
        "checked_at",
        "due",
        "job_id",
        "ready",
        "subscribers",
        "task_type",
    )

    def __init__(self, job_id: str, now: float) -> None:
        self.job_id: str = job_id
        self.subscribers: list[Subscriber] = []
        self.changed_at: float = now
        """When the hub last accepted a change of the job's state (or the watch began)."""
        self.checked_at: float = -math.inf
        """When the reconciler last finished checking the job."""
        self.due: float = math.inf
        """The deadline of the job's live entry in the reconciler's timer queue (inf: none)."""
        self.ready: int = -1
        """The job's class in the reconciler's ready queue (-1: not in it)."""
        self.busy: bool = False
        """A check of the job is in flight."""
        self.again: bool = False
        """Check again as soon as the one in flight ends (news arrived meanwhile)."""
        self.task_type: str | None = None
        """The job's task type, when known (submitted here, or fetched over HTTP)."""

    def __repr__(self) -> str:
        return f"<JobInterest {self.job_id} subscribers={len(self.subscribers)}>"


class InterestListener(Protocol):
    """Told when a job becomes watched, changes state, or stops being watched."""

    def watched(self, interest: JobInterest, latest: JobUpdate | None, now: float) -> None: ...

    def changed(self, interest: JobInterest, update: JobUpdate, now: float) -> None: ...

    def unwatched(self, interest: JobInterest) -> None: ...


class JobHub:
    """job_id -> subscribers, plus a bounded cache of every job's latest state."""

    def __init__(self, cache_size: int = 10_000) -> None:
        self._cache_size = cache_size
        self._latest: OrderedDict[str, JobUpdate] = OrderedDict()
        self._interest: dict[str, JobInterest] = {}
        self.stats: HubStats = HubStats()
        self.listener: InterestListener | None = None
        """The reconcile schedule, told about watches and accepted changes."""

    # -- state -----------------------------------------------------------------------------
    def latest(self, job_id: str) -> JobUpdate | None:
        """The latest accepted update of a job, if it is cached."""
        return self._latest.get(job_id)

    def watched(self) -> list[str]:
        """Jobs that have subscribers and are not finished."""
        return [job_id for job_id in self._interest if not self._is_done(job_id)]

    def interests(self) -> Iterable[JobInterest]:
        """Every watched job's record (finished ones included), in the order watched."""
        return self._interest.values()

    def watched_count(self) -> int:
        """How many jobs have subscribers (O(1))."""
        return len(self._interest)

    def live_status(self, interest: JobInterest) -> str | None:
        """The status of a watched, unfinished job; ``""`` if its state is unknown; None if the
        record is no longer current (unwatched) or the job has finished."""
        if self._interest.get(interest.job_id) is not interest:
            return None
        latest = self._latest.get(interest.job_id)
        if latest is None:
            return ""
        return None if latest.is_terminal else latest.status

    def subscriber_count(self, job_id: str | None = None) -> int:
        if job_id is not None:
            interest = self._interest.get(job_id)
            return len(interest.subscribers) if interest else 0
        return sum(len(i.subscribers) for i in self._interest.values())

    def _is_done(self, job_id: str) -> bool:
        latest = self._latest.get(job_id)
        return latest is not None and latest.is_terminal

    # -- publishing ------------------------------------------------------------------------
    def publish(self, update: JobUpdate, now: float) -> bool:
        """Apply ``update``; deliver it to the job's subscribers if it moves the job forward."""
        self.stats.published += 1
        previous = self._latest.get(update.job_id)
        if not accepts(previous, update):
            self.stats.dropped += 1
            if (
                previous is not None
                and previous.job is None
                and update.job is not None
                and (
                    canonical_status(previous.status) == canonical_status(update.status)
                    or (previous.is_terminal and update.is_terminal)
                )
            ):
                # Same state, now with the whole JobResponse: keep the richer one. A terminal
                # state from MQTT is replaced by the server's own terminal state (which wins).
                self._latest[update.job_id] = update
            return False
        self.stats.accepted += 1
        latest = self._latest
        latest[update.job_id] = update
        latest.move_to_end(update.job_id)
        if len(latest) > self._cache_size:
            self._evict()
        interest = self._interest.get(update.job_id)
        if interest is not None:
            interest.changed_at = now
            subscribers = interest.subscribers
            if len(subscribers) == 1:  # the usual case, without a copy
                subscribers[0].deliver(update)
            else:  # (a copy: a subscriber may unsubscribe while it is delivered to)
                for subscriber in list(subscribers):
                    subscriber.deliver(update)
            if self.listener is not None and self._interest.get(update.job_id) is interest:
                self.listener.changed(interest, update, now)
        return True

    def fail(self, job_id: str, error: ClClientError) -> None:
        """End every subscription of a job with ``error`` (for example: the job was deleted)."""
        interest = self._interest.pop(job_id, None)
        if interest is not None:
            if self.listener is not None:
                self.listener.unwatched(interest)
            for subscriber in interest.subscribers:
                subscriber.fail(error)

    def fail_all(self, error: ClClientError) -> None:
        """End every subscription (the client is closing)."""
        for job_id in list(self._interest):
            self.fail(job_id, error)

    def _evict(self) -> None:
        # (Called when the cache is over its size.) Evict the least recently updated jobs nobody
        # watches. Watched ones met on the way are moved to the back, so the next eviction does
        # not walk past them again.
        overflow = len(self._latest) - self._cache_size
        victims: list[str] = []
        kept: list[str] = []
        for job_id in self._latest:
            if len(victims) >= overflow:
                break
            (kept if job_id in self._interest else victims).append(job_id)
        for job_id in victims:
            del self._latest[job_id]
        for job_id in kept:
            self._latest.move_to_end(job_id)

    # -- subscribing -----------------------------------------------------------------------
    def add(self, job_id: str, subscriber: Subscriber, now: float) -> JobUpdate | None:
        """Register ``subscriber`` and prime it with the job's latest state, if known."""
        interest = self._interest.get(job_id)
        latest = self._latest.get(job_id)
        if interest is None:
            interest = self._interest[job_id] = JobInterest(job_id, now)
            if self.listener is not None:
                self.listener.watched(interest, latest, now)
        interest.subscribers.append(subscriber)
        if latest is not None:
            subscriber.deliver(latest)
        return latest

    def remove(self, job_id: str, subscriber: Subscriber) -> None:
        """Unregister ``subscriber`` (idempotent)."""
        interest = self._interest.get(job_id)
        if interest is None:
            return
        try:
            interest.subscribers.remove(subscriber)
        except ValueError:
            return
        if not interest.subscribers:
            del self._interest[job_id]
            if self.listener is not None:
                self.listener.unwatched(interest)
