"""Job lifecycle rules, as pure functions.

``queued < processing < completed | error``. A terminal state is final; an update that would move a
job backwards, or repeat its current state, is dropped. Older status names (``in_progress``,
``failed``) map onto the real ones; unknown statuses count as in flight.
"""

from __future__ import annotations

from ._models import JobStatus, JobUpdate

__all__ = ["accepts", "canonical_status", "is_failure", "is_terminal", "rank"]

_CANONICAL = {
    JobStatus.IN_PROGRESS.value: JobStatus.PROCESSING.value,
    JobStatus.FAILED.value: JobStatus.ERROR.value,
}
_RANK = {
    JobStatus.QUEUED.value: 0,
    JobStatus.PROCESSING.value: 1,
    JobStatus.COMPLETED.value: 2,
    JobStatus.ERROR.value: 2,
}
_UNKNOWN_RANK = 1


def canonical_status(status: str) -> str:
    """Canonical status name (``in_progress``: ``processing``; ``failed``: ``error``)."""
    lowered = status.lower()
    return _CANONICAL.get(lowered, lowered)


def rank(status: str) -> int:
    """Position in the lifecycle: 0 queued, 1 processing (or unknown), 2 terminal."""
    return _RANK.get(canonical_status(status), _UNKNOWN_RANK)


def is_terminal(status: str) -> bool:
    """True for ``completed`` and ``error`` (and ``failed``)."""
    return rank(status) == 2


def is_failure(status: str) -> bool:
    """True for ``error`` (and ``failed``)."""
    return canonical_status(status) == JobStatus.ERROR.value


def accepts(previous: JobUpdate | None, new: JobUpdate) -> bool:
    """Whether ``new`` moves a job forward from ``previous``.

    Dropped: anything after a terminal state, anything of a lower rank (out of order), and exact
    repeats of the current status and progress (QoS 1 duplicates). Within the same rank, progress
    must grow, or the status must change (an unknown in-flight status).
    """
    if previous is None:
        return True
    if is_terminal(previous.status):
        return False
    old_rank, new_rank = rank(previous.status), rank(new.status)
    if new_rank != old_rank:
        return new_rank > old_rank
    if canonical_status(new.status) != canonical_status(previous.status):
        return True
    return new.progress > previous.progress
