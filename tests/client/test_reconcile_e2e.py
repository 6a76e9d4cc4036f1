"""Reconciliation end to end: the budget, idle announcements, lost events, reconnects.

Real HTTP over loopback to the local service and real MQTT; the service counts every
``GET /jobs/{id}`` it answers (``svc.job_reads``), which is what these tests look at.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from cl_client import (
    ClientSettings,
    ComputeClient,
    JobResponse,
    JobUpdate,
    NotFoundError,
    TransportError,
)
from cl_client._core.hub import JobHub
from cl_client._core.reconcile import ReconcileSchedule, SchedulePolicy
from cl_client._engine import Reconciler
from cl_client.testing import JobRecord, LocalComputeService, generic_task
from tests.util import wait_until

Factory = Callable[..., LocalComputeService]


@pytest.fixture
def upload(tmp_path: Path) -> Path:
    path = tmp_path / "photo.bin"
    path.write_bytes(b"some bytes")
    return path


def add_queued_jobs(svc: LocalComputeService, count: int, task_type: str = "generic") -> list[str]:
    """Queued jobs in the service's store (as POST would make them, without uploads)."""
    ids: list[str] = []
    for _ in range(count):
        job_id = str(uuid.uuid4())
        svc.state.jobs[job_id] = JobRecord(
            job_id=job_id,
            task_type=task_type,
            params={"input_path": "input/none"},
            priority=5,
            created_at=time.time_ns() // 1_000_000,
        )
        ids.append(job_id)
    return ids


def reads_between(svc: LocalComputeService, start: float, end: float) -> list[str]:
    return [job_id for at, job_id in svc.job_reads if start <= at < end]


@pytest.mark.slow
@pytest.mark.parametrize("mqtt_enabled", [True, False], ids=["mqtt", "polling"])
async def test_budget_is_respected_with_5000_watched_queued_jobs(
    svc: LocalComputeService, mqtt_enabled: bool
) -> None:
    svc.pause_workers()
    ids = add_queued_jobs(svc, 5000)
    settings = svc.settings(
        mqtt_enabled=mqtt_enabled,
        reconcile_rate=20,
        # Every job would be due many times a second without the budget.
        reconcile_interval=0.05,
        reconcile_max_interval=0.1,
        poll_interval=0.05,
        poll_max_interval=0.1,
        job_cache_size=10_000,
    )
    async with ComputeClient(settings) as client:
        watches = [client.watch(job_id) for job_id in ids]  # all unknown: all due at once
        start = anyio.current_time()
        await anyio.sleep(2.5)
        end = anyio.current_time()
        reads = reads_between(svc, start - 1, end + 1)  # every read this client made
        assert 0 < len(reads) <= 20 * (end - start) + 5 + 2  # rate x time + the 5-token burst
        assert len(set(reads)) == len(reads)  # no job twice while others wait for a first check
        assert client.statistics().reconciled >= len(reads)
        for watch in watches:
            await watch.aclose()


@pytest.mark.slow
async def test_requests_in_flight_stay_within_reconcile_concurrency(
    svc: LocalComputeService,
) -> None:
    svc.pause_workers()
    ids = add_queued_jobs(svc, 200)
    delay = 0.3
    svc.faults.delay_job_reads(delay)
    settings = svc.settings(reconcile_rate=1000, reconcile_concurrency=3, job_cache_size=1000)
    async with ComputeClient(settings) as client:
        watches = [client.watch(job_id) for job_id in ids]
        await anyio.sleep(1.5)
        times = [at for at, _ in svc.job_reads]
        # Each answer takes at least `delay`: requests that arrived within `delay` of each
        # other were in flight together.
        in_flight = max(sum(1 for t in times if at - delay < t <= at) for at in times)
        assert 1 <= in_flight <= 3 and len(times) >= 3
        for watch in watches:
            await watch.aclose()


@pytest.mark.slow
@pytest.mark.parametrize("announce", [True, False], ids=["idle-announced", "quiet-worker"])
async def test_silent_failure_ends_the_watch(
    svc: LocalComputeService, upload: Path, announce: bool
) -> None:
    svc.worker().announce_idle_after_job = announce
    # With the idle announcement nothing else could end it in time (the period is a minute);
    # without it, the processing job's periodic check does.
    interval = 60 if announce else 0.5
    async with ComputeClient(svc.settings(reconcile_interval=interval)) as client:
        svc.faults.fail_jobs("out of memory")
        created = await client.submit("generic", upload)
        with anyio.fail_after(10):
            updates = [u async for u in client.watch(created.job_id)]
    assert [u.status for u in updates][-1] == "error"
    assert updates[-1].source == "http" and updates[-1].error_message == "out of memory"
    assert not any(e.event_type == "error" for e in svc.published_events)
    reads = [job_id for _, job_id in svc.job_reads if job_id == created.job_id]
    assert 1 <= len(reads) <= (2 if announce else 30)


@pytest.mark.slow
async def test_job_whose_processing_event_was_dropped_still_ends(
    svc: LocalComputeService, upload: Path
) -> None:
    svc.faults.drop_events("processing")
    settings = svc.settings(reconcile_interval=0.2, reconcile_max_interval=0.5)
    async with ComputeClient(settings) as client:
        svc.faults.fail_jobs("silent", count=1)
        failed = await client.submit("generic", upload)
        with anyio.fail_after(10):
            failed_updates = [u async for u in client.watch(failed.job_id)]
        completed = await client.submit("generic", upload)
        with anyio.fail_after(10):
            completed_updates = [u async for u in client.watch(completed.job_id)]
    # Over MQTT the failed job never left "queued": its queued schedule found the error.
    assert [u.status for u in failed_updates] == ["queued", "error"]
    assert failed_updates[-1].source == "http"
    assert completed_updates[-1].status == "completed"
    assert "processing" not in [u.status for u in completed_updates]


@pytest.mark.slow
async def test_after_a_broker_restart_every_watched_job_is_checked_once(
    local_compute_factory: Factory, upload: Path
) -> None:
    # The embedded broker: the test restarts it.
    async with (
        local_compute_factory(mqtt_url=None, tasks={"generic": generic_task}) as svc,
        # One request at a time, so the server sees them in the order they were sent.
        ComputeClient(
            svc.settings(
                reconcile_interval=60, reconnect_initial_delay=0.05, reconcile_concurrency=1
            )
        ) as client,
    ):
        gate = svc.faults.block_jobs()
        ids = [(await client.submit("generic", upload)).job_id for _ in range(4)]
        watches = [client.watch(job_id) for job_id in ids]
        with anyio.fail_after(10):
            await wait_until(lambda: getattr(client.latest(ids[0]), "status", "") == "processing")
            await anyio.sleep(0.2)
            mark = len(svc.job_reads)
            assert mark == 0  # nothing was due yet
            await svc.restart_broker()
            await svc.wait_for_broker_connection()
            await wait_until(lambda: client.mqtt_connected and client.statistics().reconnects >= 1)
            await wait_until(lambda: len(svc.job_reads) >= len(ids))
            await anyio.sleep(0.3)  # and nothing more comes
        after = [job_id for _, job_id in svc.job_reads]
        assert sorted(after) == sorted(ids)
        assert after[0] == ids[0]  # the processing job first
        gate.open()
        with anyio.fail_after(10):
            finals = [[u.status async for u in w][-1] for w in watches]
        assert finals == ["completed"] * 4


@pytest.mark.slow
async def test_a_slow_answer_for_one_job_does_not_delay_another(
    svc: LocalComputeService, upload: Path
) -> None:
    async with ComputeClient(svc.settings(reconcile_interval=60)) as client:
        svc.pause_workers()
        (slow_id,) = add_queued_jobs(svc, 1, task_type="nobody-runs-this")
        svc.faults.delay_job_reads(30, job_id=slow_id)
        created = await client.submit("generic", upload)
        svc.faults.fail_jobs("silent")
        async with client.watch(slow_id):  # unknown: checked at once, and stuck for 30 s
            await wait_until(lambda: any(j == slow_id for _, j in svc.job_reads))
            svc.resume_workers()
            with anyio.fail_after(10):
                updates = [u async for u in client.watch(created.job_id)]
    assert updates[-1].status == "error"


async def test_a_watch_made_right_after_entering_is_checked_at_once(
    svc: LocalComputeService, upload: Path
) -> None:
    async with ComputeClient(svc.settings()) as first:
        job = await first.wait((await first.submit("generic", upload)).job_id)
    async with ComputeClient(svc.settings()) as client:
        done: list[JobResponse] = []
        client.subscribe_job_updates(job.job_id, on_complete=done.append)
        with anyio.fail_after(5):
            await wait_until(lambda: bool(done))
    assert done[0].status == "completed"
    assert client.statistics().reconciled == 1


# -- the dispatcher on its own: a stand-in for GET /jobs/{id} ---------------------------------


class Sink:
    def __init__(self) -> None:
        self.updates: list[JobUpdate] = []
        self.errors: list[Exception] = []

    def deliver(self, update: JobUpdate) -> None:
        self.updates.append(update)

    def fail(self, error: Exception) -> None:
        self.errors.append(error)


@pytest.mark.slow
async def test_each_check_fails_alone_and_is_retried(caplog: pytest.LogCaptureFixture) -> None:
    hub = JobHub()
    settings = ClientSettings(reconcile_interval=0.2)
    schedule = ReconcileSchedule(hub, SchedulePolicy.from_settings(settings))
    calls: dict[str, int] = {}

    async def get_job(job_id: str) -> JobResponse:
        calls[job_id] = calls.get(job_id, 0) + 1
        if job_id == "hangs" and calls[job_id] == 1:
            await anyio.sleep(10)
        if job_id == "buggy" and calls[job_id] == 1:
            raise RuntimeError("a bug in one check")
        if job_id == "unreachable" and calls[job_id] == 1:
            raise TransportError("connection refused")
        if job_id == "deleted":
            raise NotFoundError(f"Job {job_id} not found", status_code=404)
        return JobResponse(job_id=job_id, status="completed", task_type="t")

    sinks = {job_id: Sink() for job_id in ("hangs", "buggy", "unreachable", "deleted", "fine")}
    reconciler = Reconciler(schedule, hub, get_job, timeout=0.3)
    with caplog.at_level(logging.DEBUG, logger="cl_client"):
        async with anyio.create_task_group() as tg:
            tg.start_soon(reconciler.run)
            for job_id, sink in sinks.items():
                hub.add(job_id, sink, anyio.current_time())
            with anyio.fail_after(5):
                await wait_until(lambda: all(s.updates or s.errors for s in sinks.values()))
            tg.cancel_scope.cancel()
    assert [u.status for u in sinks["fine"].updates] == ["completed"]
    assert calls["fine"] == 1 and calls["hangs"] == 2 and calls["buggy"] == 2
    assert isinstance(sinks["deleted"].errors[0], NotFoundError)
    assert "no answer within 0.3 s" in caplog.text
    assert "a bug in one check" in caplog.text and "connection refused" in caplog.text
