"""ComputeClient end to end: real HTTP over loopback to the local service, a real MQTT broker.

Runs on asyncio and trio; CI runs it again against mosquitto (CL_CLIENT_TEST_MQTT_URL).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Unpack

import anyio
import anyio.lowlevel
import pytest

from cl_client import (
    ClientClosedError,
    ComputeClient,
    DownloadError,
    JobFailedError,
    JobNotFoundError,
    JobResponse,
    JobTimeoutError,
    JobUpdate,
    MqttError,
    NotFoundError,
    ParameterError,
    SettingsOverrides,
    TransportError,
    WorkerEvent,
    WorkerUnavailableError,
)
from cl_client._core.lifecycle import rank
from cl_client.testing import LocalComputeService, generic_task
from tests.util import wait_until

Factory = Callable[..., LocalComputeService]


@pytest.fixture
def upload(tmp_path: Path) -> Path:
    path = tmp_path / "input file é.txt"
    path.write_text("some bytes to hash")
    return path


def own_threads() -> set[str]:
    """Running threads, less the event loops' shared worker pools (anyio, asyncio, trio)."""
    pools = ("AnyIO worker thread", "asyncio_", "Trio thread")
    return {t.name for t in threading.enumerate() if not t.name.startswith(pools)}


def client_for(
    service: LocalComputeService, **overrides: Unpack[SettingsOverrides]
) -> ComputeClient:
    return ComputeClient(service.settings(**overrides))


async def test_iterator_and_callbacks_see_the_same_updates(
    svc: LocalComputeService, upload: Path
) -> None:
    async with client_for(svc) as client:
        svc.faults.task_delay = 0.05
        created = await client.submit("generic", upload, {"progress": "1"})
        progress: list[JobUpdate] = []
        completed: list[JobResponse] = []
        client.subscribe_job_updates(
            created.job_id, on_progress=progress.append, on_complete=completed.append
        )
        seen = [u async for u in client.watch(created.job_id)]
        with anyio.fail_after(5):
            await wait_until(lambda: bool(completed))
    assert [u.status for u in seen] == [u.status for u in progress]
    assert seen[-1].status == "completed" and seen[-1].progress == 100
    assert completed[0].task_output is not None and completed[0].task_output["size"] == 18
    assert completed[0].params["input_path"] == f"input/{upload.name}"


@pytest.mark.slow
async def test_update_published_before_watch_is_delivered(
    svc: LocalComputeService, upload: Path
) -> None:
    async with client_for(svc) as client:
        created = await client.submit("generic", upload)
        with anyio.fail_after(5):
            await wait_until(lambda: svc.job(created.job_id).status == "completed")
            await anyio.sleep(0.05)  # the completed event has reached this client
        updates = [u async for u in client.watch(created.job_id)]
        assert [u.status for u in updates] == ["completed"]
    # A client that never saw the job learns its final state over HTTP.
    async with client_for(svc) as fresh:
        updates = [u async for u in fresh.watch(created.job_id)]
        assert [(u.status, u.source) for u in updates] == [("completed", "http")]
        job = await fresh.wait(created.job_id)
        assert job.task_output is not None


async def test_failed_job_without_mqtt_event_ends_watch_wait_and_on_complete(
    svc: LocalComputeService, upload: Path
) -> None:
    async with client_for(svc, reconcile_interval=0.3) as client:
        svc.faults.fail_jobs("model exploded")
        created = await client.submit("generic", upload)
        completed: list[JobResponse] = []

        async def on_complete(job: JobResponse) -> None:
            completed.append(job)

        client.subscribe_job_updates(created.job_id, on_complete=on_complete)
        with anyio.fail_after(5):
            updates = [u async for u in client.watch(created.job_id)]
            with pytest.raises(JobFailedError, match="model exploded") as info:
                await client.wait(created.job_id)
            await wait_until(lambda: bool(completed))
        job = await client.wait(created.job_id, raise_on_error=False)
    assert updates[-1].is_failed and updates[-1].source == "http"
    assert updates[-1].error_message == "model exploded"
    assert info.value.job.status == "error"
    assert completed[0].error_message == "model exploded" and job.is_failed
    assert not any(e.event_type == "error" for e in svc.published_events)


async def test_rare_error_event_ends_the_watch_over_mqtt(
    svc: LocalComputeService, upload: Path
) -> None:
    async with client_for(svc, reconcile_interval=60) as client:
        svc.faults.fail_jobs("escaped", error_event=True)
        created = await client.submit("generic", upload)
        with anyio.fail_after(5):
            updates = [u async for u in client.watch(created.job_id)]
    assert updates[-1].status == "error" and updates[-1].source == "mqtt"


async def test_duplicate_and_out_of_order_events_are_ignored(
    svc: LocalComputeService, upload: Path
) -> None:
    async with client_for(svc, reconcile_interval=60) as client:
        svc.faults.duplicate_events("queued", "completed", copies=2)
        svc.faults.reorder_events("processing")  # published after "completed"
        statuses: list[str] = []
        created = await client.submit("generic", upload)
        client.subscribe_job_updates(
            created.job_id, on_progress=lambda u: statuses.append(u.status)
        )
        with anyio.fail_after(5):
            updates = [u async for u in client.watch(created.job_id)]
            await anyio.sleep(0.1)  # late duplicates and the held processing event arrive
    # Whatever interleaving the broker delivered, the watch moved strictly forward, once per state.
    ranks = [rank(u.status) for u in updates]
    assert ranks == sorted(set(ranks)) and updates[-1].status == "completed"
    assert client.statistics().updates_dropped >= 4  # two extra copies each of queued and completed
    assert statuses == [u.status for u in updates]


async def test_broker_restart_mid_watch_reconnects_and_delivers_terminal(
    local_compute_factory: Factory, upload: Path
) -> None:
    # Needs the embedded broker, which the test restarts.
    async with (
        local_compute_factory(mqtt_url=None, tasks={"generic": generic_task}) as svc,
        client_for(svc, reconcile_interval=60, reconnect_initial_delay=0.05) as client,
    ):
        gate = svc.faults.block_jobs()
        created = await client.submit("generic", upload)
        async with client.watch(created.job_id) as watch:
            with anyio.fail_after(10):
                async for update in watch:
                    if update.status == "processing":
                        break
                await svc.restart_broker()
                await svc.wait_for_broker_connection()
                await wait_until(
                    lambda: client.mqtt_connected and client.statistics().reconnects > 0
                )
                gate.open()
                final = [u async for u in watch]
    assert final[-1].status == "completed"
    assert client.statistics().reconnects >= 1


async def test_malformed_payloads_are_logged_and_ignored(
    svc: LocalComputeService, upload: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with client_for(svc) as client:
        with caplog.at_level(logging.DEBUG, logger="cl_client"):
            for bad in (b"{not json", b'{"job_id": 1, "event_type": []}', b"", b"[]"):
                await svc.publish_raw(bad)
            await svc.publish_raw(b"nope", topic=f"{svc.worker_topic_prefix}/w-bad")
            job = await client.wait((await client.submit("generic", upload)).job_id)
    assert job.status == "completed"
    assert client.statistics().malformed_messages == 5
    # Each drop is logged with its topic and an escaped excerpt: the first as a WARNING, the
    # rest of the same second at DEBUG (a flood of garbage does not flood the log).
    drops = [r for r in caplog.records if r.getMessage().startswith("dropped a malformed")]
    assert len(drops) == 5 and drops[0].levelno == logging.WARNING
    assert "b'{not json'" in drops[0].getMessage()
    assert "'inference/workers/w-bad'" in drops[-1].getMessage()


async def test_slow_consumer_does_not_delay_others(svc: LocalComputeService, upload: Path) -> None:
    async with client_for(svc) as client:
        created = await client.submit("generic", upload)
        release = anyio.Event()

        async def stuck_callback(update: JobUpdate) -> None:
            await release.wait()

        client.subscribe_job_updates(created.job_id, on_progress=stuck_callback)
        slow_watch = client.watch(created.job_id)
        await slow_watch.__anext__()  # then never reads again
        with anyio.fail_after(5):
            job = await client.wait(created.job_id)
        assert job.status == "completed"
        release.set()
        await slow_watch.aclose()


@pytest.mark.slow
async def test_ten_thousand_watches_need_no_task_each(svc: LocalComputeService) -> None:
    n = 10_000
    ids = [f"bulk-{i}" for i in range(n)]
    async with client_for(svc, reconcile_interval=600, job_cache_size=n * 2) as client:
        for job_id in ids:
            await svc.publish_event(job_id, "queued")
        with anyio.fail_after(30):
            await wait_until(lambda: client.statistics().updates_accepted >= n, timeout=30)
        tasks_before = len(anyio.get_running_tasks())
        watches = [client.watch(job_id) for job_id in ids]
        assert len(anyio.get_running_tasks()) == tasks_before
        for job_id in ids:
            await svc.publish_event(job_id, "completed", progress=100)
        with anyio.fail_after(30):
            finals = [[u.status async for u in w][-1] for w in watches]
    assert finals == ["completed"] * n


@pytest.mark.slow
async def test_cancelling_the_client_leaves_nothing_behind(
    svc: LocalComputeService, upload: Path
) -> None:
    fds = len(os.listdir("/proc/self/fd"))
    threads = own_threads()
    tasks = {t.id for t in anyio.get_running_tasks()}
    with anyio.move_on_after(0.5):
        async with client_for(svc) as client:
            svc.faults.block_jobs()
            created = await client.submit("generic", upload)
            client.subscribe_job_updates(created.job_id, on_progress=lambda u: None)
            async for _ in client.watch(created.job_id):
                pass

    # The service's (hypercorn's) side of a closed keep-alive connection lingers until its
    # 5 s keep-alive timeout; everything must be gone after that.
    def new_tasks() -> list[str | None]:
        return [t.name for t in anyio.get_running_tasks() if t.id not in tasks]

    try:
        await wait_until(lambda: not new_tasks(), timeout=10, step=0.1)
    except TimeoutError:
        pytest.fail(f"tasks still running: {new_tasks()}")
    await wait_until(lambda: len(os.listdir("/proc/self/fd")) <= fds, timeout=10, step=0.1)
    assert own_threads() <= threads
    svc.faults.clear()


@pytest.mark.slow
async def test_closing_the_client_ends_open_watches(svc: LocalComputeService, upload: Path) -> None:
    errors: list[Exception] = []
    async with anyio.create_task_group() as tg, client_for(svc) as client:
        svc.faults.block_jobs()
        created = await client.submit("generic", upload)
        watch = client.watch(created.job_id)
        await watch.__anext__()

        async def reader() -> None:
            try:
                await watch.__anext__()
            except ClientClosedError as exc:
                errors.append(exc)

        tg.start_soon(reader)
        await anyio.lowlevel.checkpoint()
    svc.faults.clear()
    assert len(errors) == 1
    with pytest.raises(ClientClosedError):
        client.watch("x")
    with pytest.raises(ClientClosedError):
        await client.get_job("x")


@pytest.mark.slow
async def test_closing_with_many_open_subscriptions_logs_one_line(
    svc: LocalComputeService, upload: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str] = []
    async with client_for(svc) as client:
        svc.pause_workers()  # the job stays queued
        created = await client.submit("generic", upload)
        for _ in range(10_000):
            client.subscribe_job_updates(
                created.job_id, on_progress=lambda u: seen.append(u.status)
            )
        with anyio.fail_after(10):
            await wait_until(lambda: len(seen) == 10_000)  # each got the job's queued state
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="cl_client"):
            await client.aclose()
    svc.resume_workers()
    lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert "10000 open subscription" in lines[0].getMessage()
    assert created.job_id in lines[0].getMessage()
    assert set(seen) == {"queued"}


@pytest.mark.slow
async def test_stale_worker_is_aged_out(local_compute_factory: Factory) -> None:
    async with local_compute_factory(
        tasks={"generic": generic_task}, workers=["w-a", "w-b"], heartbeat_interval=0.1
    ) as svc:
        async with client_for(svc, worker_ttl=0.6) as client:
            with anyio.fail_after(5):
                await client.wait_for_workers(["generic"])
                await wait_until(lambda: len(client.workers) == 2)
            events: list[WorkerEvent] = []
            async with client.watch_workers() as watch:
                await svc.kill_worker("w-a")  # kill -9: the retained message stays
                with anyio.fail_after(5):
                    async for event in watch:
                        events.append(event)
                        if event.info is None and event.worker_id == "w-a":
                            break
            assert "w-a" not in client.workers
        # A client connecting later gets the stale retained message and ignores it.
        await anyio.sleep(0.7)
        async with client_for(svc, worker_ttl=0.6) as later:
            with anyio.fail_after(5):
                await later.wait_for_workers(["generic"])
            assert "w-a" not in later.workers


@pytest.mark.slow
async def test_graceful_worker_stop_and_wait_for_workers(local_compute_factory: Factory) -> None:
    async with (
        local_compute_factory(tasks={"generic": generic_task}, workers={"w1": ["generic"]}) as svc,
        client_for(svc) as client,
    ):
        workers = await client.wait_for_workers(["generic"], timeout=5)
        assert list(workers) == ["w1"] and workers["w1"].capabilities == ["generic"]
        with pytest.raises(WorkerUnavailableError, match="clip_embedding") as info:
            await client.wait_for_workers(["clip_embedding", "generic"], timeout=0.2)
        assert info.value.missing == ["clip_embedding"] and info.value.available == ["generic"]
        await svc.stop_worker("w1")
        with anyio.fail_after(5):
            await wait_until(lambda: not client.workers)


async def test_worker_id_key_of_newer_servers(local_compute_factory: Factory) -> None:
    async with (
        local_compute_factory(tasks={"generic": generic_task}, worker_id_key="worker_id") as svc,
        client_for(svc) as client,
    ):
        assert len(await client.wait_for_workers(["generic"], timeout=5)) == 1


async def test_unreachable_server_or_broker_fails_enter_with_the_url(
    svc: LocalComputeService, free_tcp_port: int
) -> None:
    with pytest.raises(TransportError, match=f"127.0.0.1:{free_tcp_port}"):
        async with ComputeClient(compute_url=f"http://127.0.0.1:{free_tcp_port}"):
            pass
    with pytest.raises(MqttError, match=f"127.0.0.1:{free_tcp_port}"):
        async with client_for(svc, mqtt_url=f"mqtt://127.0.0.1:{free_tcp_port}", connect_timeout=2):
            pass
    client = client_for(svc)
    async with client:
        pass
    with pytest.raises(ClientClosedError, match="only once"):
        await client.__aenter__()


async def test_rest_calls_and_typed_errors(
    svc: LocalComputeService, upload: Path, tmp_path: Path
) -> None:
    async with client_for(svc) as client:
        assert client.server is not None and not client.server.auth_required
        assert (await client.server_info()).guest_mode == "on"
        caps = await client.get_capabilities()
        assert caps.capabilities == {"generic": 1} and caps.num_workers == 1
        with pytest.raises(NotFoundError, match="not found"):
            await client.get_job("no-such-job")
        with pytest.raises(ParameterError, match="no such file"):
            await client.submit("generic", tmp_path / "missing.jpg")
        with pytest.raises(ParameterError, match="not a regular file"):
            await client.submit("generic", tmp_path)
        with pytest.raises(ParameterError, match="priority"):
            await client.submit("generic", upload, priority=11)
        with pytest.raises(ParameterError, match="priority argument"):
            await client.submit("generic", upload, params={"priority": 1})

        job = await client.wait((await client.submit("generic", upload, {"flag": True})).job_id)
        assert job.params["flag"] == "true"
        dest = tmp_path / "out"
        dest.mkdir()
        saved = await client.download_job_file(job.job_id, "output/result.json", dest)
        assert saved == dest / "result.json" and b"sha256" in saved.read_bytes()
        with pytest.raises(DownloadError, match="already exists"):
            await client.download_job_file(job.job_id, "output/result.json", saved)
        again = await client.download_job_file(
            job.job_id, f"input/{upload.name}", saved, overwrite=True
        )
        assert again.read_text() == upload.read_text()
        with pytest.raises(ParameterError, match="relative"):
            await client.download_job_file(job.job_id, "../secret", dest)
        with pytest.raises(DownloadError, match="inside"):
            await client.download_job_files(job.job_id, ["output/../../x"], dest)
        with pytest.raises(NotFoundError, match="File not found"):
            await client.download_job_file(job.job_id, "output/none.bin", tmp_path / "n.bin")
        assert not (tmp_path / "n.bin").exists()
        assert not list(tmp_path.rglob("*.part-*"))
        fresh_dir = await client.download_job_file(
            job.job_id, "output/result.json", f"{tmp_path}/new/"
        )
        assert fresh_dir == tmp_path / "new" / "result.json"
        bundle = await client.download_job_files(job.job_id, ["output/result.json"], tmp_path / "b")
        assert bundle == [tmp_path / "b" / "output" / "result.json"]

        watch = client.watch(job.job_id)
        await client.delete_job(job.job_id)
        with pytest.raises(NotFoundError):
            await client.get_job(job.job_id)
        assert [u.status async for u in watch] == ["completed"]  # it had finished already


async def test_deleting_a_running_job_ends_its_watch(
    svc: LocalComputeService, upload: Path
) -> None:
    async with client_for(svc) as client:
        svc.faults.block_jobs()
        created = await client.submit("generic", upload)
        watch = client.watch(created.job_id)
        await client.delete_job(created.job_id)
        with pytest.raises(NotFoundError):
            async for _ in watch:
                pass
        svc.faults.clear()


@pytest.mark.slow
async def test_watch_of_unknown_job_fails_with_not_found(svc: LocalComputeService) -> None:
    async with client_for(svc) as client:
        with anyio.fail_after(5), pytest.raises(JobNotFoundError) as info:
            async for _ in client.watch("no-such-job"):
                pass
    assert info.value.job_id == "no-such-job"


@pytest.mark.slow
async def test_polling_path(svc: LocalComputeService, upload: Path) -> None:
    async with client_for(svc) as client:
        job = await client.wait_for_job(
            (await client.submit("generic", upload)).job_id, poll_interval=0.02
        )
        assert job.status == "completed"
        svc.faults.fail_jobs("bad")
        failing = (await client.submit("generic", upload)).job_id
        with pytest.raises(JobFailedError, match="bad"):
            await client.wait_for_job(failing, poll_interval=0.02, timeout=5)
        assert (await client.wait_for_job(failing, raise_on_error=False)).is_failed
        svc.faults.clear()
        svc.faults.block_jobs()
        blocked = (await client.submit("generic", upload)).job_id
        with pytest.raises(JobTimeoutError, match=blocked):
            await client.wait_for_job(blocked, poll_interval=0.02, timeout=0.2)
        svc.faults.clear()


@pytest.mark.slow
async def test_http_only_mode_watches_by_polling(svc: LocalComputeService, upload: Path) -> None:
    async with client_for(svc, mqtt_enabled=False, poll_interval=0.05) as client:
        assert not client.mqtt_connected
        svc.faults.empty_capabilities = 2  # like the real server's first answer after a start
        assert (await client.get_capabilities()).num_workers == 0
        created = await client.submit("generic", upload)
        with anyio.fail_after(5):
            updates = [u async for u in client.watch(created.job_id)]
            assert (await client.wait_for_workers(["generic"], timeout=2)) == {}  # polls past it
            assert svc.faults.empty_capabilities == 0
            assert (await client.get_capabilities()).capabilities == {"generic": 1}
            with pytest.raises(WorkerUnavailableError):
                await client.wait_for_workers(["hash"], timeout=0.1)
    assert updates[-1].status == "completed" and updates[-1].source == "http"


async def test_unsubscribe_stops_callbacks(svc: LocalComputeService, upload: Path) -> None:
    async with client_for(svc) as client:
        svc.faults.block_jobs()
        created = await client.submit("generic", upload)
        calls: list[str] = []
        sid = client.subscribe_job_updates(
            created.job_id, on_progress=lambda u: calls.append(u.status)
        )
        await anyio.sleep(0.05)
        assert client.unsubscribe(sid) and not client.unsubscribe(sid)
        before = list(calls)
        svc.faults.clear()
        await client.wait(created.job_id)
        await anyio.sleep(0.05)
    assert calls == before and "completed" not in calls


async def test_older_servers_full_status_topic(svc: LocalComputeService) -> None:
    topic = "inference/job_status/{job_id}"
    async with client_for(svc, job_status_topic=topic, reconcile_interval=60) as client:
        await svc.publish_event("old-1", "queued")
        with anyio.fail_after(5):
            await wait_until(lambda: client.statistics().updates_accepted >= 1)
        watch = client.watch("old-1")
        body = b'{"job_id": "old-1", "task_type": "hash", "status": "failed", "error_message": "x"}'
        await svc.publish_raw(body, topic="inference/job_status/old-1")
        with anyio.fail_after(5):
            updates = [u async for u in watch]
    assert updates[-1].is_failed and updates[-1].job is not None
    assert updates[-1].job.error_message == "x"
