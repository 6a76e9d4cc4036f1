"""Job lifecycle rules, as pure functions.

``queued < processing < completed | error``. A terminal state is final; an update that would move a
job backwards, or repeat its current state, is dropped. Older status names (``in_progress``,
``failed``) map onto the real ones; unknown statuses count as in flight.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .models import JobUpdate

__all__ = [
    "QUEUED_RANK",
    "TERMINAL_RANK",
    "accepts",
    "canonical_status",
    "is_failure",
    "is_queued",
    "is_terminal",
    "rank",
]

# (Plain strings rather than JobStatus: models imports this module, not the other way round.)
_CANONICAL = {"in_progress": "processing", "failed": "error"}
QUEUED_RANK = 0
TERMINAL_RANK = 2
_RANK = {"queued": QUEUED_RANK, "processing": 1, "completed": TERMINAL_RANK, "error": TERMINAL_RANK}
_UNKNOWN_RANK = 1
_EXACT_RANK = {**_RANK, "in_progress": 1, "failed": TERMINAL_RANK}
"""The statuses as servers spell them: one dict lookup on the hot path."""


def canonical_status(status: str) -> str:
    """Canonical status name (``in_progress``: ``processing``; ``failed``: ``error``)."""
    lowered = status.lower()
    return _CANONICAL.get(lowered, lowered)


def rank(status: str) -> int:
    """Position in the lifecycle: 0 queued, 1 processing (or unknown), 2 terminal."""
    found = _EXACT_RANK.get(status)
    if found is not None:
        return found
    return _RANK.get(canonical_status(status), _UNKNOWN_RANK)


def is_queued(status: str) -> bool:
    """True for ``queued``."""
    return rank(status) == QUEUED_RANK


def is_terminal(status: str) -> bool:
    """True for ``completed`` and ``error`` (and ``failed``)."""
    return rank(status) == TERMINAL_RANK


def is_failure(status: str) -> bool:
    """True for ``error`` (and ``failed``)."""
    return canonical_status(status) == "error"


def accepts(previous: JobUpdate | None, new: JobUpdate) -> bool:
    """Whether ``new`` moves a job forward from ``previous``.

    Dropped: anything after a terminal state, anything of a lower rank (out of order), and exact
    repeats of the current status and progress (QoS 1 duplicates). Within the same rank, progress
    must grow, or the status must change (an unknown in-flight status).
    """
    if previous is None:
        return True
    old_rank = rank(previous.status)
    if old_rank == TERMINAL_RANK:
        return False
    new_rank = rank(new.status)
    if new_rank != old_rank:
        return new_rank > old_rank
    if new.status != previous.status and (
        canonical_status(new.status) != canonical_status(previous.status)
    ):
        return True
    return new.progress > previous.progress
