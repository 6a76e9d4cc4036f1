"""Job store, in-process workers and fault switches of the local compute service.

Behaviour follows the real server (docs/protocol.md#job-lifecycle and #job-events):

* ``POST /jobs/{plugin}`` stores the upload as ``input/<original filename>``, creates the job
  (``queued``, progress 0) and publishes the ``queued`` event before the HTTP reply.
* A worker claims the oldest queued job of its task types (FIFO, priority ignored), announces
  itself busy (``idle_count`` 0), publishes ``processing`` (progress 0), runs the task in a thread,
  then ``completed`` (progress 100) and announces itself idle again (``idle_count`` 1), after a
  failure too: the signal a client has that a silent failure may have happened.
* A task that raises ends as ``error`` with ``error_message``, ``completed_at`` and the progress
  left as it was, and **no** event. Progress callbacks write ``min(99, pct)`` and are not published.
* Capability messages are retained QoS 1; a graceful stop publishes an empty retained payload, a
  kill publishes nothing (the stale retained message stays, like ``kill -9``).

The fault switches (:class:`~._faults.Faults`) are applied here: event rules when a job event is
published, job rules when a worker runs a job.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import shutil
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, cast

import anyio
from anyio.abc import TaskStatus
from fastapi import UploadFile
from pydantic import JsonValue

from ..._core.errors import ProtocolError
from ..._core.payloads import MAX_EVENT_SIZE, decode_json
from ._faults import EventMessage, Faults, JobRecord, now_ms
from ._plugin_base import TaskContext, TaskFn

__all__ = [
    "ComputeState",
    "LocalWorker",
    "Publisher",
    "Signal",
    "WorkerAd",
    "current_user",
    "generic_task",
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


WorkerState = Literal["starting", "running", "stopped", "killed"]
_FAST_TICK = 0.05


class LocalWorker:
    """An in-process worker: claims jobs FIFO, runs tasks in a thread, announces itself.

    ``poll_interval`` None: it wakes as soon as a job is submitted. A number: it looks for work
    only every ``poll_interval`` seconds, like the real worker (``WORKER_POLL_INTERVAL``, 5 s).
    ``announce_each_poll``: publish ``idle_count`` 0 then 1 on every idle poll, as the real
    worker does; ``heartbeat_interval``: the periodic re-announcement (the real 30 s).
    """

    def __init__(
        self,
        state: ComputeState,
        worker_id: str,
        capabilities: Sequence[str],
        *,
        poll_interval: float | None = None,
        heartbeat_interval: float = 30.0,
        announce_each_poll: bool = False,
        announce_idle_after_job: bool = True,
        id_key: Literal["id", "worker_id"] = "id",
    ) -> None:
        self._state = state
        self.worker_id = worker_id
        self.capabilities: list[str] = list(capabilities)
        self.poll_interval = poll_interval
        self.heartbeat_interval = heartbeat_interval
        self.announce_each_poll = announce_each_poll
        self.announce_idle_after_job = announce_idle_after_job
        """Publish ``idle_count`` 1 right after each job, as the real worker does (False: a
        worker whose end of job nobody hears of until its next announcement)."""
        self.id_key: Literal["id", "worker_id"] = id_key
        self.status: WorkerState = "starting"
        self.idle_count: int = 1
        self.current_job: JobRecord | None = None
        self.jobs_done: int = 0
        self.paused: bool = False
        self._resumed = anyio.Event()
        self._stop_requested = False
        self._stopping = anyio.Event()
        self._scope: anyio.CancelScope | None = None
        self._job_scope: anyio.CancelScope | None = None
        self._done = anyio.Event()

    def __repr__(self) -> str:
        return f"LocalWorker({self.worker_id!r}, {self.status}, capabilities={self.capabilities})"

    @property
    def topic(self) -> str:
        return self._state.capability_topic(self.worker_id)

    def capability_payload(self) -> bytes:
        body: dict[str, JsonValue] = {
            self.id_key: self.worker_id,
            "capabilities": list(self.capabilities),
            "idle_count": self.idle_count,
            "timestamp": now_ms(),
        }
        return json.dumps(body).encode()

    async def announce(self) -> None:
        """Publish this worker's capability message (retained, QoS 1)."""
        await self._state.publish(self.topic, self.capability_payload(), qos=1, retain=True)

    # -- control -----------------------------------------------------------------------------

    def pause(self) -> None:
        """Stop claiming new jobs (the current one finishes)."""
        self.paused = True

    def resume(self) -> None:
        """Claim jobs again."""
        self.paused = False
        self._resumed.set()
        self._resumed = anyio.Event()

    async def stop(self, *, finish_job: bool = True) -> None:
        """Graceful stop: finish (or abandon) the current job, publish an empty retained payload."""
        if self.status in ("stopped", "killed"):
            return
        self._stop_requested = True
        self._stopping.set()
        if not finish_job and self._job_scope is not None:
            self._job_scope.cancel()
        self.resume()
        self._state.notify_workers()
        await self._done.wait()

    async def kill(self) -> None:
        """Like ``kill -9``: vanish at once. The stale retained message stays on the broker and a
        job being processed stays ``processing`` forever."""
        if self.status in ("stopped", "killed"):
            return
        self.status = "killed"
        if self._scope is not None:
            self._scope.cancel()
        await self._done.wait()

    # -- running -----------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """The worker's life; started with ``task_group.start(worker.run)``."""
        try:
            with anyio.CancelScope() as scope:
                self._scope = scope
                await self.announce()
                self.status = "running"
                task_status.started()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._heartbeat)
                    await self._loop()
                    tg.cancel_scope.cancel()
            if self.status != "killed":
                self.status = "stopped"
                with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                    await self._state.publish(self.topic, b"", qos=1, retain=True)
        finally:
            if self.status not in ("stopped", "killed"):
                self.status = "killed"
            self._done.set()

    async def _heartbeat(self) -> None:
        while True:
            await anyio.sleep(self.heartbeat_interval)
            await self.announce()

    async def _loop(self) -> None:
        while not self._stop_requested:
            if self.paused:
                await self._resumed.wait()
                continue
            job = self._state.claim(self.capabilities)
            if job is None:
                if self.announce_each_poll:
                    self.idle_count = 0
                    await self.announce()
                    self.idle_count = 1
                    await self.announce()
                await self._idle()
                continue
            await self._process(job)  # then look for the next job at once, as the real one does

    async def _idle(self) -> None:
        """Between polls. Without a poll interval a submission wakes the worker at once (the
        short tick only covers a wake-up that raced the claim); with one, only the clock (or a
        stop) does, like the real worker's ``WORKER_POLL_INTERVAL`` sleep."""
        if self.poll_interval is None:
            await self._state.work_signal.wait(_FAST_TICK)
            return
        with anyio.move_on_after(self.poll_interval):
            await self._stopping.wait()

    async def _process(self, job: JobRecord) -> None:
        self.current_job = job
        self.idle_count = 0
        await self.announce()
        await self._state.publish_job_event(job.job_id, "processing", 0)
        with anyio.CancelScope() as job_scope:
            self._job_scope = job_scope
            await self._execute(job)
        self._job_scope = None
        self.current_job = None
        self.jobs_done += 1
        self.idle_count = 1
        if self.announce_idle_after_job:
            await self.announce()

    async def _execute(self, job: JobRecord) -> None:
        rules = self._state.faults.take_job_rules(job)
        delay = self._state.faults.task_delay + sum(r.seconds for r in rules)
        if delay > 0:
            await anyio.sleep(delay)
        for rule in rules:
            if rule.action == "block":
                await rule.wait_open()
        failure = next((r for r in rules if r.action == "fail"), None)
        if failure is not None:
            await self._finish_error(job, failure.message, error_event=failure.error_event)
            return
        task = self._state.tasks.get(job.task_type)
        if task is None:
            await self._finish_error(job, f"No task registered for {job.task_type!r}")
            return
        job_dir = self._state.job_dir(job.job_id)
        input_rel = job.params.get("input_path")
        context = TaskContext(
            job_dir=job_dir,
            input_path=job_dir / (input_rel if isinstance(input_rel, str) else ""),
            params=dict(job.params),
            progress=_progress_setter(job),
        )
        try:
            output = await anyio.to_thread.run_sync(task, context)
        except Exception as exc:
            await self._finish_error(job, str(exc))
            return
        job.status = "completed"
        job.progress = 100
        job.task_output = output
        job.completed_at = now_ms()
        if job.job_id in self._state.jobs:
            await self._state.publish_job_event(job.job_id, "completed", 100)

    async def _finish_error(
        self, job: JobRecord, message: str, *, error_event: bool = False
    ) -> None:
        job.status = "error"
        job.error_message = message
        job.completed_at = now_ms()
        if error_event:
            job.progress = 100
            if job.job_id in self._state.jobs:
                await self._state.publish_job_event(job.job_id, "error", 100)


def _progress_setter(job: JobRecord) -> Callable[[int], None]:
    def progress(percent: int) -> None:
        if job.status == "processing":
            job.progress = max(0, min(99, int(percent)))

    return progress


def generic_task(context: TaskContext) -> dict[str, JsonValue]:
    """A simple, controllable task for tests (register it with ``tasks={"generic": generic_task}``).

    It hashes the upload, writes ``output/result.json`` and returns ``{"size", "sha256"}``. Text
    params steer it: ``sleep`` (seconds, blocking the worker thread), ``progress`` (``"1"``:
    report 25/50/75/100 %) and ``fail`` (raise ``RuntimeError`` with that message).
    """
    params = context.params
    sleep = params.get("sleep")
    if isinstance(sleep, str | int | float) and float(sleep) > 0:
        time.sleep(float(sleep))
    if params.get("progress") not in (None, "", "0", False):
        for percent in (25, 50, 75, 100):
            context.progress(percent)
    failure = params.get("fail")
    if isinstance(failure, str) and failure:
        raise RuntimeError(failure)
    data = context.input_path.read_bytes()
    result: dict[str, JsonValue] = {
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    output = context.job_dir / "output" / "result.json"
    _ = output.write_text(json.dumps(result))
    return result
