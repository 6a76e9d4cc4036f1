"""The local compute service against the real protocol: real HTTP and a real MQTT subscriber.

Every test runs on asyncio and trio, with the embedded broker (or the broker named by
``CL_CLIENT_TEST_MQTT_URL``).
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import tempfile
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import NoReturn

import anyio
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import JsonValue

from cl_client import MqttError, ParameterError, parse_mqtt_url
from cl_client._transports.mqtt.connection import MqttMessage, connect_mqtt
from cl_client.testing import (
    ComputeState,
    EmbeddedBroker,
    LocalComputeService,
    TaskContext,
    generic_task,
)
from cl_client.testing.compute._app import create_compute_app
from cl_client.testing.compute._mqtt_link import MqttLink

EXTERNAL = os.environ.get("CL_CLIENT_TEST_MQTT_URL") or None
EVENTS = "inference/events"
WORKERS = "inference/workers/+"
Factory = Callable[..., LocalComputeService]


def parse(payload: bytes | str) -> dict[str, JsonValue]:
    body: JsonValue = json.loads(payload)  # pyright: ignore[reportAny]
    assert isinstance(body, dict)
    return body


class Subscriber:
    """Collects every message received on its subscriptions."""

    def __init__(self) -> None:
        self.messages: list[MqttMessage] = []
        self._arrived = anyio.Event()

    def _add(self, message: MqttMessage) -> None:
        self.messages.append(message)
        self._arrived.set()
        self._arrived = anyio.Event()

    def events(self, job_id: str | None = None) -> list[dict[str, JsonValue]]:
        found: list[dict[str, JsonValue]] = []
        for msg in self.messages:
            if msg.topic.endswith("/events") and msg.payload.startswith(b"{"):
                body = parse(msg.payload)
                if job_id is None or body.get("job_id") == job_id:
                    found.append(body)
        return found

    def event_types(self, job_id: str) -> list[str]:
        return [str(e["event_type"]) for e in self.events(job_id)]

    def on_topic(self, topic: str) -> list[MqttMessage]:
        return [m for m in self.messages if m.topic == topic]

    async def wait_for(self, check: Callable[[], bool], timeout: float = 5.0) -> None:
        with anyio.fail_after(timeout):
            while not check():
                await self._arrived.wait()


@asynccontextmanager
async def subscribe(url: str, *topics: str) -> AsyncGenerator[Subscriber]:
    sub = Subscriber()
    async with connect_mqtt(parse_mqtt_url(url)) as conn, anyio.create_task_group() as tg:
        await conn.subscribe(*topics, qos=1)

        async def read() -> None:
            async for message in conn.messages():
                sub._add(message)

        tg.start_soon(read)
        yield sub
        tg.cancel_scope.cancel()


def make_service(**kwargs: object) -> LocalComputeService:
    options: dict[str, object] = {
        "mqtt_url": EXTERNAL,
        "tasks": {"generic": generic_task},
        "workers": ["w1"],
    }
    options.update(kwargs)
    return LocalComputeService(**options)  # pyright: ignore[reportArgumentType]


@pytest.fixture
async def svc() -> AsyncIterator[LocalComputeService]:
    async with make_service() as service:
        yield service


@pytest.fixture
async def http(svc: LocalComputeService) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=svc.compute_url) as client:
        yield client


async def submit(
    http: httpx.AsyncClient, content: bytes = b"hello", name: str = "a.txt", **fields: str
) -> str:
    response = await http.post("/jobs/generic", files={"file": (name, content)}, data=fields)
    assert response.status_code == 200, response.text
    job_id = response.json()["job_id"]  # pyright: ignore[reportAny]
    assert isinstance(job_id, str)
    return job_id


async def job_json(http: httpx.AsyncClient, job_id: str) -> dict[str, JsonValue]:
    response = await http.get(f"/jobs/{job_id}")
    assert response.status_code == 200, response.text
    return parse(response.content)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    """Poll ``check`` (HTTP state has no push notification) until it holds."""
    with anyio.fail_after(timeout):
        for _ in itertools.count():
            if await check():
                return
            await anyio.sleep(0.01)


async def wait_status(
    http: httpx.AsyncClient, job_id: str, *statuses: str, timeout: float = 5.0
) -> dict[str, JsonValue]:
    found: dict[str, JsonValue] = {}

    async def reached() -> bool:
        found.update(await job_json(http, job_id))
        return found["status"] in statuses

    await eventually(reached, timeout)
    return found


async def capabilities(http: httpx.AsyncClient) -> dict[str, JsonValue]:
    return parse((await http.get("/capabilities")).content)


# -- basic routes --------------------------------------------------------------------------------


async def test_root_reports_guest_mode(svc: LocalComputeService, http: httpx.AsyncClient) -> None:
    response = await http.get("/")
    assert response.json() == {
        "status": "healthy",
        "service": "Task Server",
        "version": "v1",
        "guestMode": "on",
    }
    svc.guest_mode = False
    assert (await http.get("/")).json()["guestMode"] == "off"
    assert svc.compute_url.startswith("http://127.0.0.1:")
    assert svc.settings().compute_url == svc.compute_url
    assert "LocalComputeService" in repr(svc)


@pytest.mark.slow
async def test_capabilities_count_idle_workers(
    svc: LocalComputeService, http: httpx.AsyncClient
) -> None:
    assert await capabilities(http) == {"num_workers": 1, "capabilities": {"generic": 1}}
    await svc.add_worker("w2", ["generic", "other"])
    assert await capabilities(http) == {
        "num_workers": 2,
        "capabilities": {"generic": 2, "other": 1},
    }
    rule = svc.faults.block_jobs()
    async with subscribe(svc.mqtt_url, WORKERS) as sub:
        await sub.wait_for(lambda: len(sub.messages) >= 2)  # the retained ones
        _ = await submit(http)
        await sub.wait_for(lambda: any(b'"idle_count": 0' in m.payload for m in sub.messages))

        async def one_busy() -> bool:
            body = await capabilities(http)
            return body == {"num_workers": 2, "capabilities": {"generic": 1, "other": 1}} or (
                body == {"num_workers": 2, "capabilities": {"generic": 1, "other": 0}}
            )

        await eventually(one_busy)
    rule.open()


@pytest.mark.slow
async def test_job_routes_and_404s(svc: LocalComputeService, http: httpx.AsyncClient) -> None:
    response = await http.get("/jobs/nope")
    assert (response.status_code, response.json()) == (404, {"detail": "Job nope not found"})
    response = await http.post("/jobs/unknown")
    assert response.status_code == 405
    assert response.json() == {"detail": "Method Not Allowed"}
    response = await http.delete("/jobs/nope")
    assert (response.status_code, response.json()) == (404, {"detail": "Job nope not found"})


@pytest.mark.slow
async def test_validation_and_server_errors(
    svc: LocalComputeService, http: httpx.AsyncClient
) -> None:
    response = await http.post("/jobs/generic", data={"priority": "1"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "file"]
    response = await http.post(
        "/jobs/generic", files={"file": ("a", b"x")}, data={"priority": "11"}
    )
    assert response.status_code == 422
    for name in ("", "../escape.txt"):
        response = await http.post("/jobs/generic", files={"file": (name, b"x")})
        assert response.status_code in (422, 500)
        if response.status_code == 500:
            assert response.headers["content-type"].startswith("text/plain")
            assert response.text == "Internal Server Error"
    assert not (svc.storage_dir / "escape.txt").exists()
    assert not svc.state.jobs


# -- the job lifecycle ---------------------------------------------------------------------------


@pytest.mark.slow
async def test_event_sequence_and_job_response(
    svc: LocalComputeService, http: httpx.AsyncClient
) -> None:
    async with subscribe(svc.mqtt_url, EVENTS) as sub:
        svc.pause_workers()
        job_id = await submit(http, b"hello", "photo é 1.txt", priority="9", extra="x")
        # The queued event went out inside the POST, before its reply.
        assert [(e.job_id, e.event_type) for e in svc.published_events] == [(job_id, "queued")]
        svc.resume_workers()
        await sub.wait_for(lambda: "completed" in sub.event_types(job_id))
    assert sub.event_types(job_id) == ["queued", "processing", "completed"]
    assert [e["progress"] for e in sub.events(job_id)] == [0, 0, 100]
    raw = [m for m in sub.messages if m.topic == EVENTS]
    assert all(m.qos == 1 and not m.retain for m in raw)
    first = json.loads(raw[0].payload)  # pyright: ignore[reportAny]
    assert raw[0].payload == json.dumps(first).encode()  # json.dumps separators: ", " and ": "
    assert list(first) == ["job_id", "event_type", "timestamp", "progress"]  # pyright: ignore[reportAny]
    body = await job_json(http, job_id)
    assert body["status"] == "completed"
    assert body["progress"] == 100
    assert body["updated_at"] == body["created_at"]
    started, completed, created = body["started_at"], body["completed_at"], body["created_at"]
    assert isinstance(started, int) and isinstance(completed, int) and isinstance(created, int)
    assert created <= started <= completed
    params = body["params"]
    assert isinstance(params, dict)
    assert next(iter(params)) == "input_path"
    assert params == {"input_path": "input/photo é 1.txt", "extra": "x"}
    assert body["priority"] == 9
    assert body["error_message"] is None
    assert body["task_output"] == {
        "size": 5,
        "sha256": "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
    }
    assert (svc.storage_dir / "jobs" / job_id / "input" / "photo é 1.txt").read_bytes() == b"hello"
    assert svc.job(job_id).created_by is None
    assert svc.worker().jobs_done == 1


@pytest.mark.slow
async def test_queued_job_while_workers_paused(
    svc: LocalComputeService, http: httpx.AsyncClient
) -> None:
    svc.pause_workers()
    job_id = await submit(http)
    await anyio.sleep(0.1)
    body = await job_json(http, job_id)
    assert body["status"] == "queued"
    assert (body["progress"], body["started_at"], body["task_output"]) == (0, None, None)
    svc.resume_workers()
    _ = await wait_status(http, job_id, "completed")


@pytest.mark.slow
async def test_fifo_ignores_priority(svc: LocalComputeService, http: httpx.AsyncClient) -> None:
    svc.pause_workers()
    ids = [await submit(http, priority=str(p)) for p in (0, 5, 10)]
    svc.resume_workers()
    for job_id in ids:
        _ = await wait_status(http, job_id, "completed")
    processing = [e.job_id for e in svc.published_events if e.event_type == "processing"]
    assert processing == ids


@pytest.mark.slow
async def test_progress_is_capped_at_99_and_not_published() -> None:
    release = threading.Event()

    def slow(context: TaskContext) -> dict[str, JsonValue]:
        context.progress(100)
        _ = release.wait(5)
        return {}

    async with make_service(tasks={"generic": slow}) as svc:
        async with httpx.AsyncClient(base_url=svc.compute_url) as http:
            job_id = await submit(http)

            async def at_99() -> bool:
                return (await job_json(http, job_id))["progress"] == 99

            await eventually(at_99)
            assert (await job_json(http, job_id))["status"] == "processing"
            release.set()
            _ = await wait_status(http, job_id, "completed")
        assert [e.progress for e in svc.published_events] == [0, 0, 100]


@pytest.mark.slow
async def test_task_failure_publishes_no_event(
    svc: LocalComputeService, http: httpx.AsyncClient
) -> None:
    async with subscribe(svc.mqtt_url, EVENTS) as sub:
        job_id = await submit(http, fail="boom", progress="1")
        body = await wait_status(http, job_id, "error")
        ok_id = await submit(http)  # a later event proves the failed job's silence is final
        await sub.wait_for(lambda: "completed" in sub.event_types(ok_id))
    assert sub.event_types(job_id) == ["queued", "processing"]
    assert body["error_message"] == "boom"
    assert body["progress"] == 99
    assert body["task_output"] is None
    assert isinstance(body["completed_at"], int)


# -- fault switches ------------------------------------------------------------------------------


@pytest.mark.slow
async def test_fail_jobs_switch(svc: LocalComputeService, http: httpx.AsyncClient) -> None:
    rule = svc.faults.fail_jobs("injected", count=1)
    first = await wait_status(http, await submit(http), "error", "completed")
    second = await wait_status(http, await submit(http), "error", "completed")
    assert (first["status"], first["error_message"], first["progress"]) == ("error", "injected", 0)
    assert second["status"] == "completed"
    assert (rule.applied, rule.remaining) == (1, 0)
    by_type = svc.faults.fail_jobs(task_type="other")
    picky = svc.faults.fail_jobs("picked", where=lambda job: job.params.get("tag") == "x")
    third = await wait_status(http, await submit(http, tag="x"), "error", "completed")
    fourth = await wait_status(http, await submit(http, tag="y"), "error", "completed")
    assert (third["error_message"], fourth["status"]) == ("picked", "completed")
    assert (by_type.applied, picky.applied) == (0, 1)
    picky.cancel()
    assert (await wait_status(http, await submit(http, tag="x"), "completed"))["progress"] == 100


@pytest.mark.slow
async def test_fail_jobs_with_error_event(
    svc: LocalComputeService, http: httpx.AsyncClient
) -> None:
    _ = svc.faults.fail_jobs("escaped", error_event=True)
    async with subscribe(svc.mqtt_url, EVENTS) as sub:
        job_id = await submit(http)
        await sub.wait_for(lambda: "error" in sub.event_types(job_id))
    assert sub.event_types(job_id) == ["queued", "processing", "error"]
    assert sub.events(job_id)[-1]["progress"] == 100
    body = await job_json(http, job_id)
    assert (body["status"], body["progress"], body["error_message"]) == ("error", 100, "escaped")


@pytest.mark.slow
async def test_latency_switches(svc: LocalComputeService, http: httpx.AsyncClient) -> None:
    svc.faults.task_delay = 0.2
    job_id = await submit(http)
    started = time.monotonic()
    assert (await wait_status(http, job_id, "processing"))["started_at"] is not None
    _ = await wait_status(http, job_id, "completed")
    assert time.monotonic() - started >= 0.1
    svc.faults.clear()
    rule = svc.faults.delay_jobs(0.2, count=1)
    _ = await wait_status(http, await submit(http), "completed")
    assert rule.applied == 1


@pytest.mark.slow
async def test_block_jobs_until_opened(svc: LocalComputeService, http: httpx.AsyncClient) -> None:
    rule = svc.faults.block_jobs(count=1)
    job_id = await submit(http)
    _ = await wait_status(http, job_id, "processing")
    await anyio.sleep(0.05)
    assert (await job_json(http, job_id))["status"] == "processing"
    assert svc.worker().current_job is svc.job(job_id)
    rule.open()
    _ = await wait_status(http, job_id, "completed")


@pytest.mark.slow
async def test_drop_events(svc: LocalComputeService, http: httpx.AsyncClient) -> None:
    rule = svc.faults.drop_events("completed", count=1)
    async with subscribe(svc.mqtt_url, EVENTS) as sub:
        dropped = await submit(http)
        _ = await wait_status(http, dropped, "completed")
        kept = await submit(http)
        await sub.wait_for(lambda: "completed" in sub.event_types(kept))
    assert sub.event_types(dropped) == ["queued", "processing"]
    assert rule.applied == 1
    only_job = svc.faults.drop_events(job_id="nope")
    everything = svc.faults.drop_events(where=lambda e: e.event_type != "queued")
    async with subscribe(svc.mqtt_url, EVENTS) as sub:
        job_id = await submit(http)
        _ = await wait_status(http, job_id, "completed")
        await sub.wait_for(lambda: bool(sub.event_types(job_id)))
    assert sub.event_types(job_id) == ["queued"]
    assert (only_job.applied, everything.applied) == (0, 2)


@pytest.mark.slow
async def test_duplicate_events(svc: LocalComputeService, http: httpx.AsyncClient) -> None:
    _ = svc.faults.duplicate_events("processing", copies=2)
    async with subscribe(svc.mqtt_url, EVENTS) as sub:
        job_id = await submit(http)
        await sub.wait_for(lambda: "completed" in sub.event_types(job_id))
    assert sub.event_types(job_id) == [
        "queued",
        "processing",
        "processing",
        "processing",
        "completed",
    ]


@pytest.mark.slow
async def test_reorder_events(svc: LocalComputeService, http: httpx.AsyncClient) -> None:
    _ = svc.faults.reorder_events("processing", count=1)
    async with subscribe(svc.mqtt_url, EVENTS) as sub:
        job_id = await submit(http)
        await sub.wait_for(lambda: len(sub.event_types(job_id)) == 3)
        assert sub.event_types(job_id) == ["queued", "completed", "processing"]
        _ = svc.faults.reorder_events("completed")
        held = await submit(http)
        _ = await wait_status(http, held, "completed")
        assert [e.event_type for e in svc.state.held_events] == ["completed"]
        await svc.release_held_events()
        await sub.wait_for(lambda: "completed" in sub.event_types(held))
    assert sub.event_types(held) == ["queued", "processing", "completed"]


async def test_raw_and_synthetic_events(svc: LocalComputeService) -> None:
    async with subscribe(svc.mqtt_url, EVENTS, "custom/topic") as sub:
        await svc.publish_raw(b"not json")
        await svc.publish_raw("{}", topic="custom/topic", qos=0)
        await svc.publish_event("job-x", "error", progress=100, timestamp=123)
        await sub.wait_for(lambda: len(sub.messages) == 3)
    assert [m.payload for m in sub.messages][:2] == [b"not json", b"{}"]
    assert sub.events("job-x") == [
        {"job_id": "job-x", "event_type": "error", "timestamp": 123, "progress": 100}
    ]


# -- workers and capability messages -------------------------------------------------------------


def _ads(sub: Subscriber, worker_id: str) -> list[MqttMessage]:
    return sub.on_topic(f"inference/workers/{worker_id}")


@pytest.mark.slow
async def test_capability_messages_around_jobs(
    svc: LocalComputeService, http: httpx.AsyncClient
) -> None:
    async with subscribe(svc.mqtt_url, WORKERS) as sub:
        await sub.wait_for(lambda: bool(_ads(sub, "w1")))
        retained = _ads(sub, "w1")[0]
        assert retained.retain and retained.qos == 1
        body = json.loads(retained.payload)  # pyright: ignore[reportAny]
        assert body == {
            "id": "w1",
            "capabilities": ["generic"],
            "idle_count": 1,
            "timestamp": body["timestamp"],
        }
        assert retained.payload == json.dumps(body).encode()
        _ = await submit(http)
        await sub.wait_for(lambda: len(_ads(sub, "w1")) >= 3)
    idle = [json.loads(m.payload)["idle_count"] for m in _ads(sub, "w1")]
    assert idle[:3] == [1, 0, 1]


@pytest.mark.slow
async def test_heartbeat_and_per_poll_announcements() -> None:
    options = {"heartbeat_interval": 0.05, "worker_id_key": "worker_id", "workers": {"hb": ["x"]}}
    async with make_service(**options) as svc, subscribe(svc.mqtt_url, WORKERS) as sub:
        await sub.wait_for(lambda: len(_ads(sub, "hb")) >= 3)
        body = json.loads(_ads(sub, "hb")[-1].payload)  # pyright: ignore[reportAny]
        assert body["worker_id"] == "hb" and body["capabilities"] == ["x"]
    async with make_service(worker_poll_interval=0.02) as svc:
        async with subscribe(svc.mqtt_url, WORKERS) as sub:
            await sub.wait_for(lambda: len(_ads(sub, "w1")) >= 5)
        idle = [json.loads(m.payload)["idle_count"] for m in _ads(sub, "w1")]
        assert 0 in idle[1:]


@pytest.mark.slow
async def test_worker_poll_interval_keeps_the_real_workers_timing() -> None:
    """With a poll interval a submission does not wake the worker: the job waits for the next
    poll, as on the real server; without one it is picked up at once."""
    async with (
        make_service(worker_poll_interval=30.0) as svc,
        httpx.AsyncClient(base_url=svc.compute_url) as http,
    ):
        assert svc.announce_each_poll
        job_id = await submit(http)
        await anyio.sleep(0.3)  # a worker woken by the submission takes milliseconds
        assert svc.job(job_id).status == "queued"
    async with (
        make_service(worker_poll_interval=0.1) as svc,
        httpx.AsyncClient(base_url=svc.compute_url) as http,
    ):
        first, second = await submit(http), await submit(http)
        await wait_status(http, first, "completed")
        await wait_status(http, second, "completed")
    with pytest.raises(ParameterError, match="worker_poll_interval"):
        LocalComputeService(worker_poll_interval=0)


async def test_graceful_stop_clears_retained_message(
    svc: LocalComputeService, http: httpx.AsyncClient
) -> None:
    worker = await svc.add_worker("w2")
    async with subscribe(svc.mqtt_url, WORKERS) as sub:
        await sub.wait_for(lambda: bool(_ads(sub, "w2")))
        await svc.stop_worker("w2")
        await sub.wait_for(lambda: _ads(sub, "w2")[-1].payload == b"")
    assert worker.status == "stopped"
    assert _ads(sub, "w2")[-1].qos == 1
    await svc.wait_for_workers_visible()

    async def one_left() -> bool:
        return (await capabilities(http))["num_workers"] == 1

    await eventually(one_left)
    async with subscribe(svc.mqtt_url, WORKERS) as late:
        await late.wait_for(lambda: bool(_ads(late, "w1")))
        await anyio.sleep(0.05)
    assert not _ads(late, "w2")
    await worker.stop()  # stopping twice is harmless
    await worker.kill()
    with pytest.raises(ValueError, match="already running"):
        _ = await svc.add_worker("w1")


@pytest.mark.slow
async def test_kill_leaves_stale_worker_and_stuck_job(
    svc: LocalComputeService, http: httpx.AsyncClient
) -> None:
    _ = svc.faults.block_jobs()
    job_id = await submit(http)
    _ = await wait_status(http, job_id, "processing")
    await svc.kill_worker("w1")
    assert svc.worker("w1").status == "killed"
    async with subscribe(svc.mqtt_url, WORKERS) as late:
        await late.wait_for(lambda: bool(_ads(late, "w1")))
    stale = _ads(late, "w1")[0]
    assert stale.retain and json.loads(stale.payload)["idle_count"] == 0
    assert (await capabilities(http))["num_workers"] == 1
    svc.faults.clear()
    await anyio.sleep(0.1)
    assert (await job_json(http, job_id))["status"] == "processing"
    # A new worker picks up new jobs; the killed one's job stays stuck.
    _ = await svc.add_worker("w2")
    _ = await wait_status(http, await submit(http), "completed")
    assert (await job_json(http, job_id))["status"] == "processing"


async def test_exit_publishes_empty_retained_payloads() -> None:
    async with EmbeddedBroker() as broker:
        async with make_service(mqtt_url=broker.url, workers=["a", "b", "c"]) as svc:
            await svc.kill_worker("b")
            assert set(broker.retained) == {f"inference/workers/{w}" for w in "abc"}
            with pytest.raises(RuntimeError, match="external broker"):
                await svc.restart_broker()
        assert broker.retained == {}
        async with make_service(
            mqtt_url=broker.url, workers=["k"], clear_stale_on_exit=False
        ) as svc:
            await svc.kill_worker("k")
        assert list(broker.retained) == ["inference/workers/k"]


@pytest.mark.slow
async def test_workers_by_capability(svc: LocalComputeService, http: httpx.AsyncClient) -> None:
    await svc.stop_worker("w1")
    job_id = await submit(http)
    await anyio.sleep(0.1)
    assert (await job_json(http, job_id))["status"] == "queued"
    _ = await svc.add_worker("other", ["other"])
    await anyio.sleep(0.1)
    assert (await job_json(http, job_id))["status"] == "queued"
    worker = await svc.add_worker(capabilities=["generic"])
    _ = await wait_status(http, job_id, "completed")
    assert worker.jobs_done == 1 and "LocalWorker" in repr(worker)
    assert set(svc.workers) == {"w1", "other", worker.worker_id}


async def test_missing_task_fails_the_job(
    svc: LocalComputeService, http: httpx.AsyncClient
) -> None:
    svc.pause_workers()
    job_id = await submit(http)
    del svc.state.tasks["generic"]
    svc.resume_workers()
    body = await wait_status(http, job_id, "error")
    assert body["error_message"] == "No task registered for 'generic'"


@pytest.mark.slow
async def test_broker_restart_and_outage() -> None:
    # Restarts the broker, so always on an embedded one (also when the suite targets mosquitto).
    async with (
        make_service(mqtt_url=None) as svc,
        httpx.AsyncClient(base_url=svc.compute_url) as http,
    ):
        await _restart_and_outage(svc, http)


async def _restart_and_outage(svc: LocalComputeService, http: httpx.AsyncClient) -> None:
    await svc.restart_broker()
    await svc.wait_for_broker_connection()
    async with subscribe(svc.mqtt_url, EVENTS) as sub:
        job_id = await submit(http)
        await sub.wait_for(lambda: "completed" in sub.event_types(job_id))
    await svc.stop_broker()

    async def disconnected() -> bool:
        return not svc.broker_connected

    await eventually(disconnected)
    job_id = await submit(http)  # the POST does not wait for the broker
    _ = await wait_status(http, job_id, "completed")
    broker = svc.broker
    assert broker is not None
    before = broker.stats.messages_received
    await svc.start_broker()
    await svc.wait_for_broker_connection()

    async def delivered() -> bool:  # queued, idle 0, processing, completed, idle 1
        return broker.stats.messages_received >= before + 5 and svc.pending_publishes == 0

    await eventually(delivered)


@pytest.mark.slow
async def test_reannounce_on_reconnect() -> None:
    async with make_service(mqtt_url=None, reannounce_on_reconnect=True) as svc:
        assert svc.broker is not None
        broker = svc.broker
        await svc.restart_broker(keep_retained=False)

        async def announced() -> bool:
            return "inference/workers/w1" in broker.retained

        await eventually(announced)


# -- delete, download, admin ---------------------------------------------------------------------


@pytest.mark.slow
async def test_delete_job(svc: LocalComputeService, http: httpx.AsyncClient) -> None:
    job_id = await submit(http)
    _ = await wait_status(http, job_id, "completed")
    count = len(svc.published_events)
    response = await http.delete(f"/jobs/{job_id}")
    assert (response.status_code, response.content) == (204, b"")
    assert not (svc.storage_dir / "jobs" / job_id).exists()
    assert (await http.get(f"/jobs/{job_id}")).status_code == 404
    assert (await http.get(f"/jobs/{job_id}/files/input/a.txt")).status_code == 404
    assert (await http.delete(f"/jobs/{job_id}")).status_code == 404
    assert len(svc.published_events) == count


@pytest.mark.slow
async def test_delete_while_processing_publishes_nothing_more(
    svc: LocalComputeService, http: httpx.AsyncClient
) -> None:
    rule = svc.faults.block_jobs()
    job_id = await submit(http)
    _ = await wait_status(http, job_id, "processing")
    assert (await http.delete(f"/jobs/{job_id}")).status_code == 204
    rule.open()

    async def done() -> bool:
        return svc.worker().jobs_done == 1

    await eventually(done)
    assert [e.event_type for e in svc.published_events] == ["queued", "processing"]


@pytest.mark.slow
async def test_download_checks(svc: LocalComputeService, http: httpx.AsyncClient) -> None:
    name = "my pic é.txt"
    job_id = await submit(http, b"0123456789", name)
    _ = await wait_status(http, job_id, "completed")
    base = f"/jobs/{job_id}/files"
    response = await http.get(f"{base}/input/my%20pic%20%C3%A9.txt")
    assert response.status_code == 200 and response.content == b"0123456789"
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["content-disposition"].startswith("attachment;")
    response = await http.get(f"{base}/output/result.json")
    assert response.headers["content-disposition"] == 'attachment; filename="result.json"'
    assert json.loads(response.content)["size"] == 10
    ranged = await http.get(f"{base}/input/my%20pic%20%C3%A9.txt", headers={"Range": "bytes=2-4"})
    assert (ranged.status_code, ranged.content) == (206, b"234")
    cases = {
        f"{base}/..%2F..%2Fsecret": (403, "Access denied: path traversal detected"),
        f"{base}/%2e%2e/%2e%2e/secret": (403, "Access denied: path traversal detected"),
        f"{base}//etc/passwd": (403, "Access denied: path traversal detected"),
        f"{base}/output/nope.bin": (404, "File not found: output/nope.bin"),
        f"{base}/input": (400, "Path is not a file: input"),
        "/jobs/nope/files/input/a.txt": (404, "Job nope not found"),
    }
    for url, (status, detail) in cases.items():
        response = await http.get(httpx.URL(svc.compute_url + url))
        assert (response.status_code, response.json()) == (status, {"detail": detail}), url
    response = await http.get(f"{base}/input/bad%00name")
    assert response.status_code == 400
    assert str(parse(response.content)["detail"]).startswith("Invalid file path:")
    (svc.storage_dir / "jobs" / job_id / "input" / name).unlink()
    (svc.storage_dir / "jobs" / job_id / "input").rmdir()
    (svc.storage_dir / "jobs" / job_id / "output" / "result.json").unlink()
    (svc.storage_dir / "jobs" / job_id / "output").rmdir()
    (svc.storage_dir / "jobs" / job_id).rmdir()
    response = await http.get(f"{base}/input/a.txt")
    assert response.json() == {"detail": f"Job directory not found for job {job_id}"}


@pytest.mark.slow
async def test_admin_storage_and_cleanup(svc: LocalComputeService, http: httpx.AsyncClient) -> None:
    old = await submit(http, b"x" * 100)
    new = await submit(http, b"y" * 10)
    for job_id in (old, new):
        _ = await wait_status(http, job_id, "completed")
    (svc.storage_dir / "jobs" / "orphan").mkdir()
    response = await http.get("/admin/jobs/storage/size")
    body = response.json()  # pyright: ignore[reportAny]
    assert body["job_count"] == 3
    sizes = sum(p.stat().st_size for p in (svc.storage_dir / "jobs").rglob("*") if p.is_file())
    assert body["total_size"] == sizes
    assert (await http.delete("/admin/jobs/cleanup")).json() == {
        "deleted_count": 0,
        "freed_space": 0,
    }
    assert (await http.delete("/admin/jobs/cleanup?days=-1")).status_code == 422
    old_dir = svc.storage_dir / "jobs" / old
    old_size = sum(p.stat().st_size for p in old_dir.rglob("*") if p.is_file())
    ten_days_ago = time.time() - 10 * 86400
    os.utime(old_dir, (ten_days_ago, ten_days_ago))
    svc.job(old).created_at = int(ten_days_ago * 1000)
    response = await http.delete("/admin/jobs/cleanup", params={"days": 7})
    assert response.json() == {"deleted_count": 1, "freed_space": old_size}
    assert (await http.get(f"/jobs/{old}")).status_code == 404
    assert (await http.get(f"/jobs/{new}")).status_code == 200


async def test_admin_pref_routes_only_when_asked(http: httpx.AsyncClient) -> None:
    """The real server has no /admin/pref (the newer upstream's name): 404 unless asked for."""
    assert (await http.get("/admin/pref")).status_code == 404
    put = await http.put("/admin/pref/guest-mode", data={"guest_mode": "false"})
    assert put.status_code in (404, 405)
    assert (await http.get("/admin/config")).status_code == 200


@pytest.mark.slow
async def test_admin_config_and_pref() -> None:
    async with (
        make_service(admin_pref=True) as svc,
        httpx.AsyncClient(base_url=svc.compute_url) as http,
    ):
        for prefix in ("/admin/config", "/admin/pref"):
            await _check_admin_config(svc, http, prefix)


async def _check_admin_config(
    svc: LocalComputeService, http: httpx.AsyncClient, prefix: str
) -> None:
    svc.guest_mode = True
    assert (await http.get(prefix)).json() == {
        "guest_mode": True,
        "updated_at": svc.state.config_updated_at,
        "updated_by": None,
    }
    assert (await http.put(f"{prefix}/guest-mode", json={"guest_mode": False})).status_code == 422
    response = await http.put(f"{prefix}/guest-mode", data={"guest_mode": "off"})
    assert response.json() == {
        "guest_mode": False,
        "message": "Configuration updated successfully",
    }
    assert (await http.get("/")).json()["guestMode"] == "off"
    response = await http.get(prefix)
    assert response.status_code == 401
    assert isinstance(svc.state.config_updated_at, int)


async def test_auth_when_guest_mode_is_off() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    admin = jwt.encode({"id": "1", "is_admin": True, "permissions": ["*"]}, key, "ES256")
    user = jwt.encode({"id": "7", "permissions": ["ai_inference_support"]}, key, "ES256")
    async with (
        make_service(guest_mode=False, public_key_pem=pem.decode()) as svc,
        httpx.AsyncClient(base_url=svc.compute_url) as http,
    ):
        response = await http.get("/jobs/x")
        assert (response.status_code, response.json()) == (
            401,
            {"detail": "Authentication required"},
        )
        assert "www-authenticate" not in response.headers
        assert (await http.post("/jobs/generic")).status_code == 401  # auth before validation
        assert (await http.get("/")).status_code == 200
        assert (await http.get("/capabilities")).status_code == 200
        as_user = {"Authorization": f"Bearer {user}"}
        as_admin = {"Authorization": f"Bearer {admin}"}
        response = await http.post("/jobs/generic", files={"file": ("a", b"x")}, headers=as_user)
        job_id = response.json()["job_id"]  # pyright: ignore[reportAny]
        assert isinstance(job_id, str)
        assert svc.job(job_id).created_by == "7"
        assert (await http.get("/admin/config", headers=as_user)).status_code == 403
        response = await http.put(
            "/admin/config/guest-mode", data={"guest_mode": "true"}, headers=as_admin
        )
        assert response.status_code == 200
        assert (await http.get("/admin/config")).json()["updated_by"] == "1"


# -- service lifecycle ---------------------------------------------------------------------------


async def test_local_compute_fixture(local_compute: LocalComputeService) -> None:
    async with httpx.AsyncClient(base_url=local_compute.compute_url) as http:
        body = await capabilities(http)
    assert body["num_workers"] == 1
    caps = body["capabilities"]
    assert isinstance(caps, dict) and "hash" in caps and "generic" not in caps


async def test_factory_fixture_and_options(local_compute_factory: Factory, tmp_path: Path) -> None:
    topic = "custom/events"
    async with local_compute_factory(
        storage_dir=tmp_path,
        tasks={"generic": generic_task},
        workers=2,
        capabilities=["generic"],
        events_topic=topic,
        worker_topic_prefix="custom/workers/",
    ) as svc:
        assert svc.storage_dir == tmp_path and len(svc.workers) == 2
        assert svc.settings(poll_interval=1.0).job_events_topic == topic
        async with (
            subscribe(svc.mqtt_url, topic) as sub,
            httpx.AsyncClient(base_url=svc.compute_url) as http,
        ):
            job_id = await submit(http)
            await sub.wait_for(lambda: "completed" in sub.event_types(job_id))
        assert set(svc.state.workers_seen) == set(svc.workers)
    assert (tmp_path / "jobs" / job_id).is_dir()  # a given storage dir is kept


async def test_service_errors_and_lifecycle() -> None:
    svc = make_service(workers=0)
    with pytest.raises(RuntimeError, match="not running"):
        _ = svc.compute_url
    for name in ("mqtt_url", "storage_dir", "faults"):
        with pytest.raises(RuntimeError, match="not running"):
            _ = getattr(svc, name)  # pyright: ignore[reportAny]
    with pytest.raises(RuntimeError, match="not been entered"):
        await svc.__aexit__(None, None, None)  # anyio.AsyncContextManagerMixin's rule
    with pytest.raises(ValueError, match="inside"):
        async with svc:
            with pytest.raises(RuntimeError, match="already been entered"):
                await svc.__aenter__()
            with pytest.raises(LookupError):
                _ = svc.worker()
            raise ValueError("inside")
    temp = Path(tempfile.gettempdir())
    storage_dirs = set(temp.glob("cl-local-compute-*"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]  # pyright: ignore[reportAny]
    with pytest.raises(MqttError):
        async with make_service(mqtt_url=f"mqtt://127.0.0.1:{port}"):
            pass
    assert set(temp.glob("cl-local-compute-*")) == storage_dirs


async def test_service_entered_by_one_task_at_a_time() -> None:
    svc = make_service(workers=0)

    async def enter_too() -> None:
        with pytest.raises(RuntimeError, match="already running"):
            async with svc:
                pytest.fail("entered a service that another task is starting")

    async with anyio.create_task_group() as tg:
        tg.start_soon(enter_too)  # runs while the first entry waits for its broker link
        async with svc:
            assert svc.broker_connected
    assert not svc.broker_connected
    async with svc:  # and again once it has exited
        assert svc.broker_connected
        assert svc.compute_url.startswith("http://127.0.0.1:")


# -- pieces on their own -------------------------------------------------------------------------


async def test_compute_app_in_process_without_broker(tmp_path: Path) -> None:
    state = ComputeState(tmp_path, tasks={"generic": generic_task})
    transport = httpx.ASGITransport(app=create_compute_app(state))
    async with httpx.AsyncClient(transport=transport, base_url="http://compute") as http:
        job_id = await submit(http, b"abc", sleep="0.01")
        assert state.jobs[job_id].status == "queued"
        assert [e.event_type for e in state.published_events] == ["queued"]
    (tmp_path / "jobs" / "stray-file").write_bytes(b"12345")
    assert state.storage_size()["job_count"] == 1
    for payload in (
        b"not json",
        b"[1]",
        b'{"id": "x"}',
        b'{"capabilities": ["a"], "idle_count": 1}',
    ):
        state.note_capability_message("inference/workers/x", payload)
    assert list(state.workers_seen) == ["x"]
    assert state.capabilities_summary() == {"num_workers": 1, "capabilities": {"a": 1}}
    state.note_capability_message("inference/workers/x", b"")
    assert state.capabilities_summary() == {"num_workers": 0, "capabilities": {}}


class _FlakyConnection:
    """A stand-in MQTT connection whose publishes fail while ``broken``."""

    def __init__(self) -> None:
        self.broken = True
        self.sent: list[bytes] = []

    async def subscribe(self, *topics: str, qos: int = 1) -> None:
        raise NotImplementedError

    async def publish(
        self, topic: str, payload: bytes | str, *, qos: int = 1, retain: bool = False
    ) -> None:
        if self.broken:
            raise MqttError("connection lost")
        self.sent.append(payload.encode() if isinstance(payload, str) else payload)

    def messages(self) -> AsyncIterator[MqttMessage]:
        raise NotImplementedError

    async def deliver(self, handler: Callable[[MqttMessage], None]) -> NoReturn:
        raise NotImplementedError


async def test_link_keeps_messages_that_could_not_be_sent() -> None:
    link = MqttLink(parse_mqtt_url("mqtt://127.0.0.1:1"), subscriptions=[], on_message=print)
    await link.publish("t", b"kept while down")
    conn = _FlakyConnection()
    link._conn = conn
    await link.publish("t", b"failed once")
    assert (link.pending, link.connected) == (2, True)
    conn.broken = False
    await link.publish("t", b"third")
    assert (link.pending, conn.sent) == (0, [b"kept while down", b"failed once", b"third"])


@pytest.mark.slow
async def test_deleted_job_failing_with_error_event(
    svc: LocalComputeService, http: httpx.AsyncClient
) -> None:
    block = svc.faults.block_jobs()
    _ = svc.faults.fail_jobs("gone", error_event=True)
    job_id = await submit(http)
    _ = await wait_status(http, job_id, "processing")
    assert (await http.delete(f"/jobs/{job_id}")).status_code == 204
    block.open()

    async def done() -> bool:
        return svc.worker().jobs_done == 1

    await eventually(done)
    assert [e.event_type for e in svc.published_events] == ["queued", "processing"]
    assert svc.guest_mode
