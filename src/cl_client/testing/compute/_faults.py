"""Job records, job events and the fault switches of the local compute service.

:class:`Faults` holds the switches tests use to make the service misbehave on purpose: task
latency, failures (the usual silent one, or the rare one with an ``error`` event), dropped,
duplicated or reordered job events, slow ``GET /jobs/{id}`` answers and empty
``GET /capabilities`` answers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import anyio
from pydantic import JsonValue

__all__ = ["EventMessage", "EventRule", "Faults", "JobRecord", "JobRule", "ReadRule", "now_ms"]


def now_ms() -> int:
    """Epoch milliseconds, like every timestamp of the real server."""
    return time.time_ns() // 1_000_000


@dataclass(eq=False)
class JobRecord:
    """One stored job: the DB row of the real server."""

    job_id: str
    task_type: str
    params: dict[str, JsonValue]
    priority: int
    created_at: int
    created_by: str | None = None
    status: str = "queued"
    progress: int = 0
    task_output: dict[str, JsonValue] | None = None
    error_message: str | None = None
    started_at: int | None = None
    completed_at: int | None = None

    def to_response(self) -> dict[str, JsonValue]:
        """The ``GET /jobs/{id}`` body (``updated_at`` always equals ``created_at``)."""
        return {
            "job_id": self.job_id,
            "task_type": self.task_type,
            "status": self.status,
            "progress": self.progress,
            "params": dict(self.params),
            "task_output": self.task_output,
            "error_message": self.error_message,
            "priority": self.priority,
            "created_at": self.created_at,
            "updated_at": self.created_at,
            "started_at": self.started_at,
            "completed_at": self.completed_at,
        }


@dataclass(frozen=True, slots=True)
class EventMessage:
    """One job event as published on the events topic."""

    job_id: str
    event_type: str
    timestamp: int
    progress: int

    def payload(self) -> bytes:
        """Serialised like the real server: ``json.dumps`` with its default ``", "`` separators."""
        body = {
            "job_id": self.job_id,
            "event_type": self.event_type,
            "timestamp": self.timestamp,
            "progress": self.progress,
        }
        return json.dumps(body).encode()


EventAction = Literal["drop", "duplicate", "reorder"]
JobAction = Literal["fail", "delay", "block"]


@dataclass(eq=False)
class EventRule:
    """A switch acting on published job events. ``remaining`` None means no limit."""

    action: EventAction
    event_types: frozenset[str] = frozenset()
    job_id: str | None = None
    where: Callable[[EventMessage], bool] | None = None
    remaining: int | None = None
    copies: int = 1
    applied: int = 0
    active: bool = True

    def matches(self, event: EventMessage) -> bool:
        if not self.active or self.remaining == 0:
            return False
        if self.event_types and event.event_type not in self.event_types:
            return False
        if self.job_id is not None and event.job_id != self.job_id:
            return False
        return self.where is None or self.where(event)

    def cancel(self) -> None:
        """Switch this rule off."""
        self.active = False


@dataclass(eq=False)
class JobRule:
    """A switch acting on jobs when a worker runs them. ``remaining`` None means no limit."""

    action: JobAction
    task_type: str | None = None
    where: Callable[[JobRecord], bool] | None = None
    remaining: int | None = None
    message: str = "Simulated task failure"
    error_event: bool = False
    seconds: float = 0.0
    applied: int = 0
    active: bool = True
    _gate: anyio.Event | None = field(default=None, repr=False)

    def matches(self, job: JobRecord) -> bool:
        if not self.active or self.remaining == 0:
            return False
        if self.task_type is not None and job.task_type != self.task_type:
            return False
        return self.where is None or self.where(job)

    def cancel(self) -> None:
        """Switch this rule off. A ``block`` rule also lets the jobs it holds go on."""
        self.active = False
        if self._gate is not None:
            self._gate.set()

    def open(self) -> None:
        """Release the jobs a ``block`` rule holds, and stop holding new ones."""
        self.cancel()

    async def wait_open(self) -> None:
        if self._gate is not None:
            await self._gate.wait()


@dataclass(eq=False)
class ReadRule:
    """A switch delaying ``GET /jobs/{id}`` answers. ``remaining`` None means no limit."""

    seconds: float
    job_id: str | None = None
    where: Callable[[str], bool] | None = None
    remaining: int | None = None
    applied: int = 0
    active: bool = True

    def matches(self, job_id: str) -> bool:
        if not self.active or self.remaining == 0:
            return False
        if self.job_id is not None and job_id != self.job_id:
            return False
        return self.where is None or self.where(job_id)

    def cancel(self) -> None:
        """Switch this rule off (answers already waiting keep their delay)."""
        self.active = False


class Faults:
    """Fault switches: latency, failures and event misbehaviour, changed at any time."""

    def __init__(self) -> None:
        self.task_delay: float = 0.0
        """Seconds every job spends in ``processing`` before its task runs."""
        self.event_rules: list[EventRule] = []
        self.job_rules: list[JobRule] = []
        self.read_rules: list[ReadRule] = []
        self.empty_capabilities: int = 0
        """How many more ``GET /capabilities`` calls answer with no workers. The real server
        answers its very first call after a start that way: set it to 1
        (docs/protocol.md#worker-capabilities-over-http)."""

    # -- events ------------------------------------------------------------------------------

    def _add_event_rule(self, rule: EventRule) -> EventRule:
        self.event_rules.append(rule)
        return rule

    def drop_events(
        self,
        *event_types: str,
        job_id: str | None = None,
        where: Callable[[EventMessage], bool] | None = None,
        count: int | None = None,
    ) -> EventRule:
        """Do not publish matching events (all types when none are given)."""
        return self._add_event_rule(EventRule("drop", frozenset(event_types), job_id, where, count))

    def duplicate_events(
        self,
        *event_types: str,
        copies: int = 1,
        job_id: str | None = None,
        where: Callable[[EventMessage], bool] | None = None,
        count: int | None = None,
    ) -> EventRule:
        """Publish matching events ``1 + copies`` times."""
        return self._add_event_rule(
            EventRule("duplicate", frozenset(event_types), job_id, where, count, copies=copies)
        )

    def reorder_events(
        self,
        *event_types: str,
        job_id: str | None = None,
        where: Callable[[EventMessage], bool] | None = None,
        count: int | None = None,
    ) -> EventRule:
        """Hold matching events back and publish each right after the next event published.

        Held events left over are published by ``LocalComputeService.release_held_events()``.
        """
        return self._add_event_rule(
            EventRule("reorder", frozenset(event_types), job_id, where, count)
        )

    def take_event_rule(self, event: EventMessage) -> EventRule | None:
        """The first active rule matching ``event``, counted as applied."""
        for rule in self.event_rules:
            if rule.matches(event):
                rule.applied += 1
                if rule.remaining is not None:
                    rule.remaining -= 1
                return rule
        return None

    # -- jobs --------------------------------------------------------------------------------

    def _add_job_rule(self, rule: JobRule) -> JobRule:
        self.job_rules.append(rule)
        return rule

    def fail_jobs(
        self,
        message: str = "Simulated task failure",
        *,
        count: int | None = None,
        task_type: str | None = None,
        where: Callable[[JobRecord], bool] | None = None,
        error_event: bool = False,
    ) -> JobRule:
        """Make matching jobs fail with ``message`` (the next ``count`` of them, or all).

        By default the failure is the usual one: status ``error``, no MQTT event. With
        ``error_event=True`` it is the rare one where the exception escapes the task runner:
        progress 100 and an ``error`` event is published.
        """
        return self._add_job_rule(
            JobRule("fail", task_type, where, count, message=message, error_event=error_event)
        )

    def delay_jobs(
        self,
        seconds: float,
        *,
        count: int | None = None,
        task_type: str | None = None,
        where: Callable[[JobRecord], bool] | None = None,
    ) -> JobRule:
        """Keep matching jobs in ``processing`` for ``seconds`` before their task runs."""
        return self._add_job_rule(JobRule("delay", task_type, where, count, seconds=seconds))

    def block_jobs(
        self,
        *,
        count: int | None = None,
        task_type: str | None = None,
        where: Callable[[JobRecord], bool] | None = None,
    ) -> JobRule:
        """Keep matching jobs in ``processing`` until ``rule.open()`` is called."""
        return self._add_job_rule(JobRule("block", task_type, where, count, _gate=anyio.Event()))

    def take_job_rules(self, job: JobRecord) -> list[JobRule]:
        """All active rules matching ``job``, counted as applied."""
        taken: list[JobRule] = []
        for rule in self.job_rules:
            if rule.matches(job):
                rule.applied += 1
                if rule.remaining is not None:
                    rule.remaining -= 1
                taken.append(rule)
        return taken

    # -- reads -------------------------------------------------------------------------------

    def delay_job_reads(
        self,
        seconds: float,
        *,
        job_id: str | None = None,
        where: Callable[[str], bool] | None = None,
        count: int | None = None,
    ) -> ReadRule:
        """Answer matching ``GET /jobs/{id}`` requests ``seconds`` late (``where`` gets the id).

        A slow database, or a server under load: the client's other requests must not wait.
        """
        rule = ReadRule(seconds, job_id, where, count)
        self.read_rules.append(rule)
        return rule

    def take_read_delay(self, job_id: str) -> float:
        """The total delay of the active rules matching a read of ``job_id``, counted as applied."""
        delay = 0.0
        for rule in self.read_rules:
            if rule.matches(job_id):
                rule.applied += 1
                if rule.remaining is not None:
                    rule.remaining -= 1
                delay += rule.seconds
        return delay

    def clear(self) -> None:
        """Switch every fault off (blocked jobs go on); reset ``task_delay`` and
        ``empty_capabilities``."""
        for rule in self.job_rules:
            rule.cancel()
        self.event_rules.clear()
        self.job_rules.clear()
        for read_rule in self.read_rules:
            read_rule.cancel()
        self.read_rules.clear()
        self.task_delay = 0.0
        self.empty_capabilities = 0
