"""The job store of the local compute service (its workers: ``_worker.py``).

Behaviour follows the real server (docs/protocol.md#job-lifecycle and #job-events):

* ``POST /jobs/{plugin}`` stores the upload as ``input/<original filename>``, creates the job
  (``queued``, progress 0) and publishes the ``queued`` event before the HTTP reply.
* Workers (``_worker.py``) claim, run and finish jobs; see there.
* Capability messages are retained QoS 1; a graceful stop publishes an empty retained payload, a
  kill publishes nothing (the stale retained message stays, like ``kill -9``).

The fault switches (:class:`~._faults.Faults`): event rules are applied here when a job event is
published, job rules by the worker that runs the job.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import time
import uuid
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, cast

import anyio
from fastapi import UploadFile
from pydantic import JsonValue

from ..._core.errors import ProtocolError
from ..._core.payloads import MAX_EVENT_SIZE, decode_json
from ._faults import EventMessage, Faults, JobRecord, now_ms
from ._plugin_base import TaskFn

__all__ = [
    "ComputeState",
    "Publisher",
    "Signal",
    "WorkerAd",
    "current_user",
]

_LOG = logging.getLogger("cl_client.testing.compute")

current_user: ContextVar[str | None] = ContextVar("cl_client_testing_current_user", default=None)
"""The authenticated user of the request being handled (set by the app's auth dependency)."""


class Signal:
    """Wake every task waiting in ``wait()`` when ``fire()`` is called (an edge, not a level)."""

    def __init__(self) -> None:
        self._event: anyio.Event | None = None

    def fire(self) -> None:
        if self._event is not None:
            self._event.set()
            self._event = None

    async def wait(self, timeout: float = math.inf) -> None:
        """Until the next ``fire()``, or ``timeout`` seconds."""
        if self._event is None:
            self._event = anyio.Event()
        event = self._event
        with anyio.move_on_after(timeout):
            await event.wait()


class Publisher(Protocol):
    """Where MQTT messages go (the service's broker connection)."""

    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class WorkerAd:
    """A capability message as the server's capability cache keeps it."""

    worker_id: str
    capabilities: tuple[str, ...]
    idle_count: int
    timestamp: int | None


class ComputeState:
    """Everything the compute app and the workers share: jobs, storage, config, publishing."""

    def __init__(
        self,
        storage_dir: Path,
        *,
        tasks: Mapping[str, TaskFn],
        publisher: Publisher | None = None,
        guest_mode: bool = True,
        events_topic: str = "inference/events",
        worker_topic_prefix: str = "inference/workers",
    ) -> None:
        self.storage_dir = storage_dir
        self.tasks: dict[str, TaskFn] = dict(tasks)
        self.publisher = publisher
        self.guest_mode = guest_mode
        self.config_updated_at: int | None = None
        self.config_updated_by: str | None = None
        self.events_topic = events_topic
        self.worker_topic_prefix: str = worker_topic_prefix.rstrip("/")
        self.faults: Faults = Faults()
        self.jobs: dict[str, JobRecord] = {}
        self.workers_seen: dict[str, WorkerAd] = {}
        self.published_events: list[EventMessage] = []
        self.job_reads: list[tuple[float, str]] = []
        """Every ``GET /jobs/{id}`` received: (``anyio.current_time()``, job id), in order."""
        self._held: list[EventMessage] = []
        self.work_signal: Signal = Signal()
        """Fired when idle workers should look for work (a job arrived, a worker must stop)."""
        self.workers_seen_signal: Signal = Signal()
        """Fired when the capability cache changes."""
        self.jobs_dir.mkdir(parents=True, exist_ok=True)

    @property
    def jobs_dir(self) -> Path:
        return self.storage_dir / "jobs"

    def job_dir(self, job_id: str) -> Path:
        return self.jobs_dir / job_id

    # -- submission --------------------------------------------------------------------------

    async def submit(
        self, task_type: str, upload: UploadFile, params: dict[str, JsonValue], priority: int
    ) -> dict[str, JsonValue]:
        """The plugin routes' submit: store the upload, create the job, publish ``queued``."""
        job_id = str(uuid.uuid4())
        job_dir = self.job_dir(job_id)
        input_dir = job_dir / "input"
        input_dir.mkdir(parents=True)
        (job_dir / "output").mkdir()
        name = upload.filename or ""
        if not name or name in (".", "..") or "/" in name or "\\" in name or "\x00" in name:
            # The real server fails too (500) and leaves the job directory behind.
            raise ValueError(f"cannot store an upload named {name!r}")
        await anyio.to_thread.run_sync(_store_upload, upload, input_dir / name)
        stored: dict[str, JsonValue] = {"input_path": f"input/{name}"}
        stored.update((key, value) for key, value in params.items() if key != "input_path")
        job = JobRecord(
            job_id=job_id,
            task_type=task_type,
            params=stored,
            priority=priority,
            created_at=now_ms(),
            created_by=current_user.get(),
        )
        self.jobs[job_id] = job
        await self.publish_job_event(job_id, "queued", 0)
        self.notify_workers()
        return {"job_id": job_id, "status": "queued", "task_type": task_type}

    # -- worker coordination -----------------------------------------------------------------

    def notify_workers(self) -> None:
        """Wake idle workers now (a job arrived, or a worker must stop)."""
        self.work_signal.fire()

    def claim(self, capabilities: Sequence[str]) -> JobRecord | None:
        """Atomically take the oldest queued job of these task types (priority is ignored)."""
        for job in self.jobs.values():
            if job.status == "queued" and job.task_type in capabilities:
                job.status = "processing"
                job.started_at = now_ms()
                return job
        return None

    def delete_job(self, job_id: str) -> bool:
        """Remove the job row and its directory; False if there is no such job."""
        if self.jobs.pop(job_id, None) is None:
            return False
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)
        return True

    # -- MQTT --------------------------------------------------------------------------------

    async def publish(
        self, topic: str, payload: bytes | str, *, qos: int = 1, retain: bool = False
    ) -> None:
        """Publish a raw message (no fault switches applied)."""
        if self.publisher is None:
            return
        data = payload.encode() if isinstance(payload, str) else payload
        await self.publisher.publish(topic, data, qos=qos, retain=retain)

    async def send_event(self, event: EventMessage) -> None:
        """Publish one event as is, and record it in ``published_events``."""
        self.published_events.append(event)
        await self.publish(self.events_topic, event.payload(), qos=1, retain=False)

    async def publish_job_event(self, job_id: str, event_type: str, progress: int) -> None:
        """Publish a job event the way the server does, through the event fault switches."""
        event = EventMessage(job_id, event_type, now_ms(), progress)
        rule = self.faults.take_event_rule(event)
        if rule is not None and rule.action == "reorder":
            self._held.append(event)
            return
        if rule is not None and rule.action == "drop":
            return
        copies = 1 + (rule.copies if rule is not None else 0)
        for _ in range(copies):
            await self.send_event(event)
        await self.release_held_events()

    async def release_held_events(self) -> None:
        """Publish the events a ``reorder`` switch holds back."""
        while self._held:
            await self.send_event(self._held.pop(0))

    @property
    def held_events(self) -> list[EventMessage]:
        return list(self._held)

    def capability_topic(self, worker_id: str) -> str:
        return f"{self.worker_topic_prefix}/{worker_id}"

    def note_capability_message(self, topic: str, payload: bytes) -> None:
        """Feed the capability cache from a message on ``{prefix}/+`` (like the real server)."""
        worker_id = topic.rsplit("/", 1)[-1]
        self.workers_seen_signal.fire()
        if not payload:
            _ = self.workers_seen.pop(worker_id, None)
            return
        try:  # the client's own bounded decoder: garbage on the broker never kills the service
            body = decode_json(payload, "capability message", max_size=MAX_EVENT_SIZE)
        except ProtocolError as exc:
            _LOG.warning("ignoring a malformed capability message on %r: %s", topic, exc)
            return
        if not isinstance(body, dict):
            _LOG.warning("ignoring a capability message that is not an object on %r", topic)
            return
        fields = cast(dict[str, object], body)
        caps = fields.get("capabilities")
        idle = fields.get("idle_count")
        stamp = fields.get("timestamp")
        if not isinstance(caps, list) or not isinstance(idle, int):
            _LOG.warning("ignoring a capability message without capabilities on %s", topic)
            return
        self.workers_seen[worker_id] = WorkerAd(
            worker_id=worker_id,
            capabilities=tuple(cap for cap in cast(list[object], caps) if isinstance(cap, str)),
            idle_count=idle,
            timestamp=stamp if isinstance(stamp, int) else None,
        )

    def capabilities_summary(self) -> dict[str, JsonValue]:
        """``GET /capabilities``: idle counts summed per capability, and the worker count."""
        counts: dict[str, JsonValue] = {}
        if self.faults.empty_capabilities > 0:
            self.faults.empty_capabilities -= 1
            return {"num_workers": 0, "capabilities": counts}
        for ad in self.workers_seen.values():
            for cap in ad.capabilities:
                previous = counts.get(cap, 0)
                counts[cap] = (previous if isinstance(previous, int) else 0) + ad.idle_count
        return {"num_workers": len(self.workers_seen), "capabilities": counts}

    # -- admin -------------------------------------------------------------------------------

    def storage_size(self) -> dict[str, JsonValue]:
        """Bytes under ``jobs/`` and the number of job directories (orphans included)."""
        total = 0
        count = 0
        for entry in self.jobs_dir.iterdir():
            if entry.is_dir():
                count += 1
                total += _tree_size(entry)
        return {"total_size": total, "job_count": count}

    def cleanup(self, days: int) -> dict[str, JsonValue]:
        """Delete job directories older (mtime) and jobs created before ``days`` days ago."""
        cutoff_s = time.time() - days * 86400
        deleted = 0
        freed = 0
        for entry in list(self.jobs_dir.iterdir()):
            if entry.is_dir() and entry.stat().st_mtime < cutoff_s:
                size = _tree_size(entry)
                shutil.rmtree(entry, ignore_errors=True)
                deleted += 1
                freed += size
        cutoff_ms = int(cutoff_s * 1000)
        for job_id in [j.job_id for j in self.jobs.values() if j.created_at < cutoff_ms]:
            del self.jobs[job_id]
        return {"deleted_count": deleted, "freed_space": freed}


def _store_upload(upload: UploadFile, target: Path) -> None:
    """Copy the spooled upload to ``target`` in chunks (one thread hop for the whole file)."""
    _ = upload.file.seek(0)
    with target.open("wb") as out:
        shutil.copyfileobj(upload.file, out, 1 << 20)


def _tree_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):  # removed while walking
                total += (Path(root) / name).stat().st_size
    return total
