"""The local compute service's in-process workers, and ``generic_task`` for tests.

A worker claims the oldest queued job of its task types (FIFO, priority ignored), announces
itself busy, publishes ``processing``, runs the task in a thread, then ``completed``, and
announces itself idle again, after a failure too: the signal a client has that a silent failure
may have happened (docs/protocol.md#job-lifecycle). A task that raises ends as ``error`` with
``error_message``, ``completed_at`` and the progress left as it was, and **no** event. Progress
callbacks write ``min(99, pct)`` and are not published. Job fault rules
(:class:`~._faults.Faults`) are applied when a job runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Literal

import anyio
from anyio.abc import TaskStatus
from pydantic import JsonValue

from ._faults import JobRecord, now_ms
from ._jobs import ComputeState
from ._plugin_base import TaskContext

__all__ = ["LocalWorker", "generic_task"]

_LOG = logging.getLogger("cl_client.testing.compute")

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
