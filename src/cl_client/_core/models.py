"""Typed models of everything the compute service sends (HTTP bodies and MQTT payloads).

Unknown fields and unknown status strings from a newer server are tolerated.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, JsonValue

from .lifecycle import TERMINAL_RANK, is_failure, is_terminal, rank

__all__ = [
    "CapabilitiesResponse",
    "CleanupResult",
    "ComputeConfig",
    "JobCreated",
    "JobEvent",
    "JobResponse",
    "JobStatus",
    "JobUpdate",
    "ServerInfo",
    "StorageInfo",
    "WorkerEvent",
    "WorkerInfo",
]


class JobStatus(StrEnum):
    """Job statuses. The real server uses the first four; the last two come from older plans."""

    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    ERROR = "error"
    IN_PROGRESS = "in_progress"
    FAILED = "failed"


class _Model(BaseModel):
    # defer_build: validators are built on first use, not when the module is imported
    model_config: ClassVar[ConfigDict] = ConfigDict(
        extra="allow", frozen=True, populate_by_name=True, defer_build=True
    )


class JobResponse(_Model):
    """``GET /jobs/{job_id}``: the whole stored job (docs/protocol.md#the-job-record)."""

    job_id: str
    task_type: str = ""
    status: str
    progress: int = 0
    params: dict[str, JsonValue] = Field(default_factory=dict)
    task_output: dict[str, JsonValue] | None = None
    error_message: str | None = None
    priority: int = 5
    created_at: int | None = None
    updated_at: int | None = None
    started_at: int | None = None
    completed_at: int | None = None

    @property
    def is_terminal(self) -> bool:
        """True once the job has completed or failed."""
        return is_terminal(self.status)

    @property
    def is_failed(self) -> bool:
        """True if the job ended in error."""
        return is_failure(self.status)

    @property
    def output_path(self) -> str | None:
        """The relative output path the server stored in ``params`` (for file-producing plugins)."""
        value = self.params.get("output_path")
        return value if isinstance(value, str) else None


class JobCreated(_Model):
    """The reply to a plugin submission (``POST /jobs/{task_type}``)."""

    job_id: str
    status: str = JobStatus.QUEUED.value
    task_type: str = ""


class JobEvent(_Model):
    """One message on the ``inference/events`` topic (docs/protocol.md#job-events)."""

    job_id: str
    event_type: str
    timestamp: int | None = None
    progress: int = 0


@dataclass(frozen=True, slots=True)
class JobUpdate:
    """What watchers and callbacks receive: one change of a job's state.

    ``job`` is the whole JobResponse when the update came over HTTP (reconciliation, polling) or
    from an older server's per-job status topic; MQTT events carry only status and progress.
    A small slotted object (no per-update dicts): the hub caches one per job.
    """

    job_id: str
    status: str
    progress: int = 0
    timestamp: int | None = None
    source: Literal["mqtt", "http", "submit"] = "mqtt"
    job: JobResponse | None = None

    @property
    def is_terminal(self) -> bool:
        # (one call fewer than is_terminal(): every update asks)
        return rank(self.status) == TERMINAL_RANK

    @property
    def is_failed(self) -> bool:
        return is_failure(self.status)

    @property
    def error_message(self) -> str | None:
        return self.job.error_message if self.job is not None else None

    @classmethod
    def from_job(cls, job: JobResponse, source: Literal["http", "mqtt"] = "http") -> JobUpdate:
        return cls(
            job.job_id,
            job.status,
            job.progress,
            job.completed_at or job.started_at or job.created_at,
            source,
            job,
        )


class WorkerInfo(_Model):
    """A worker's capability message (``inference/workers/{id}``, retained).

    The real server sends ``id``; newer upstream versions send ``worker_id``: both are accepted.
    """

    worker_id: str = Field(validation_alias=AliasChoices("worker_id", "id"))
    capabilities: list[str] = Field(default_factory=list)
    idle_count: int = 0
    timestamp: int | None = None


class WorkerEvent(_Model):
    """A change in the worker registry. ``info`` is None when the worker left or aged out."""

    worker_id: str
    info: WorkerInfo | None


class CapabilitiesResponse(_Model):
    """``GET /capabilities``: idle worker counts per capability."""

    num_workers: int = 0
    capabilities: dict[str, int] = Field(default_factory=dict)


class ServerInfo(_Model):
    """``GET /``: health and auth mode."""

    status: str = ""
    service: str = ""
    version: str = ""
    guest_mode: str | None = Field(default=None, alias="guestMode")
    auth_required_flag: bool | None = Field(default=None, alias="auth_required")

    @property
    def auth_required(self) -> bool:
        """Whether compute requires a token: ``auth_required`` if sent, else guestMode "off"."""
        if self.auth_required_flag is not None:
            return self.auth_required_flag
        if self.guest_mode is not None:
            return self.guest_mode.lower() == "off"
        return True


class StorageInfo(_Model):
    """``GET /admin/jobs/storage/size``."""

    total_size: int
    job_count: int


class CleanupResult(_Model):
    """``DELETE /admin/jobs/cleanup``."""

    deleted_count: int
    freed_space: int


class ComputeConfig(_Model):
    """``GET /admin/config`` (or ``/admin/pref`` on newer servers)."""

    guest_mode: bool
    updated_at: int | None = None
    updated_by: str | None = None
