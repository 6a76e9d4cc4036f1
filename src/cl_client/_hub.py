"""The hub: synchronous fan-out of job updates to subscribers (sans-IO).

The MQTT reader, the reconciler and the submit path all call :meth:`JobHub.publish`. It applies
the lifecycle rules against the latest known state of the job and hands accepted updates to the
job's subscribers in O(1) per subscriber. Subscribers only enqueue: the hub never awaits anyone.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Protocol

from ._errors import ClClientError
from ._lifecycle import accepts, canonical_status
from ._models import JobUpdate

__all__ = ["HubStats", "JobHub", "Subscriber"]

logger = logging.getLogger("cl_client")


class Subscriber(Protocol):
    """Something that wants a job's updates: a watch mailbox or a callback subscription."""

    def deliver(self, update: JobUpdate) -> None: ...

    def fail(self, error: ClClientError) -> None: ...


@dataclass
class HubStats:
    published: int = 0
    accepted: int = 0
    dropped: int = 0
    """Duplicates, out-of-order updates and updates after a terminal state."""


@dataclass
class _Interest:
    subscribers: list[Subscriber] = field(default_factory=list)
    checked_at: float = 0.0
    """When the job last had news or was last reconciled (monotonic seconds)."""


class JobHub:
    """job_id -> subscribers, plus a bounded cache of every job's latest state."""

    def __init__(self, cache_size: int = 10_000) -> None:
        self._cache_size = cache_size
        self._latest: OrderedDict[str, JobUpdate] = OrderedDict()
        self._interest: dict[str, _Interest] = {}
        self.stats = HubStats()

    # -- state -----------------------------------------------------------------------------
    def latest(self, job_id: str) -> JobUpdate | None:
        """The latest accepted update of a job, if it is cached."""
        return self._latest.get(job_id)

    def watched(self) -> list[str]:
        """Jobs that have subscribers and are not finished."""
        return [job_id for job_id in self._interest if not self._is_done(job_id)]

    def due(self, now: float, interval: float) -> list[str]:
        """Watched unfinished jobs with no news for ``interval`` seconds."""
        return [
            job_id
            for job_id, interest in self._interest.items()
            if now - interest.checked_at >= interval and not self._is_done(job_id)
        ]

    def touch(self, job_id: str, now: float) -> None:
        """Record that a job was just checked (its reconcile clock restarts)."""
        interest = self._interest.get(job_id)
        if interest is not None:
            interest.checked_at = now

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
                and canonical_status(previous.status) == canonical_status(update.status)
            ):
                # Same state, now with the whole JobResponse: keep the richer one.
                self._latest[update.job_id] = update
            self.touch(update.job_id, now)
            return False
        self.stats.accepted += 1
        self._latest[update.job_id] = update
        self._latest.move_to_end(update.job_id)
        self._evict()
        interest = self._interest.get(update.job_id)
        if interest is not None:
            interest.checked_at = now
            for subscriber in list(interest.subscribers):
                subscriber.deliver(update)
        return True

    def fail(self, job_id: str, error: ClClientError) -> None:
        """End every subscription of a job with ``error`` (for example: the job was deleted)."""
        interest = self._interest.pop(job_id, None)
        if interest is not None:
            for subscriber in interest.subscribers:
                subscriber.fail(error)

    def fail_all(self, error: ClClientError) -> None:
        """End every subscription (the client is closing)."""
        for job_id in list(self._interest):
            self.fail(job_id, error)

    def _evict(self) -> None:
        # Evict the least recently updated jobs nobody watches. Watched ones met on the way are
        # moved to the back, so the next eviction does not walk past them again.
        overflow = len(self._latest) - self._cache_size
        if overflow <= 0:
            return
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
        if interest is None:
            interest = self._interest[job_id] = _Interest(checked_at=now)
        interest.subscribers.append(subscriber)
        latest = self._latest.get(job_id)
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
