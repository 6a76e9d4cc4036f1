"""Hostile input never takes a client down (issue 9), end to end on asyncio and trio.

Every case: garbage from the broker (also retained, also met by a client that connects later),
broken HTTP answers served raw by a loopback proxy in front of the local service, a trickling
or stalling server, a forged terminal event, hostile download targets, bad settings, URL
credentials, worker watch bookkeeping and the log of an ordinary broker restart. After each, the
same client completes a normal job.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import logging
import subprocess
from collections.abc import Callable, Generator
from pathlib import Path
from urllib.parse import urlsplit

import anyio
import pytest
from anyio.abc import SocketStream

from cl_client import (
    ClClientError,
    ClientSettings,
    ComputeClient,
    DownloadError,
    JobResponse,
    ParameterError,
    ProtocolError,
    ServerError,
    TransportError,
    WorkerUnavailableError,
    WorkerWatch,
)
from cl_client.testing import LocalComputeService, generic_task
from tests.rawhttp import (
    Answer,
    FaultyProxy,
    TcpProxy,
    bad_chunked,
    body,
    fake_gzip,
    json_body,
    stall,
    trickle,
    truncated,
)
from tests.util import wait_until

pytestmark = pytest.mark.anyio

Factory = Callable[..., LocalComputeService]

DEEP = b"[" * 100_000
HUGE_INT = b'{"job_id": "a", "event_type": "queued", "progress": ' + b"9" * 5000 + b"}"
MQTT_GARBAGE = [
    DEEP,
    HUGE_INT,
    b"{" * 50_000,
    b"\xff\xfe not UTF-8",
    b'{"job_id": "\\ud800", "event_type": "completed"}',
    b'{"job_id": "a", "event_type": "completed", "progress": NaN}',
    b'{"job_id": "a", "event_type": "completed", "progress": 1e999}',
    b'{"job_id": "' + b"x" * 5000 + b'", "event_type": "queued"}',
    b"x" * 2_000_000,
    b"null",
]


@pytest.fixture
def upload(tmp_path: Path) -> Path:
    path = tmp_path / "upload.bin"
    path.write_bytes(b"hostile input test " * 10)
    return path


async def complete_a_job(client: ComputeClient, upload: Path) -> JobResponse:
    with anyio.fail_after(15):
        job = await client.wait((await client.submit("generic", upload)).job_id)
    assert job.status == "completed" and job.task_output is not None
    return job


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR]


# -- the broker --------------------------------------------------------------------------------


async def test_garbage_from_the_broker_is_dropped_and_counted(
    svc: LocalComputeService, upload: Path, caplog: pytest.LogCaptureFixture
) -> None:
    worker_topic = f"{svc.worker_topic_prefix}/w-evil"
    async with ComputeClient(svc.settings()) as client:
        with caplog.at_level(logging.DEBUG, logger="cl_client"):
            for payload in MQTT_GARBAGE:
                await svc.publish_raw(payload)
                await svc.publish_raw(payload, topic=f"{svc.worker_topic_prefix}/w-bad")
            await svc.publish_raw(DEEP, topic=worker_topic, retain=True)  # stays on the broker
            await complete_a_job(client, upload)
            # Every message is garbage on both topics, except the long job id, which is a valid
            # capability message (its id comes from the topic): 2 x 10 - 1, and the retained one.
            await wait_until(
                lambda: client.statistics().malformed_messages == 2 * len(MQTT_GARBAGE)
            )
        assert svc.worker().worker_id in client.workers and "w-evil" not in client.workers
        dropped = [
            r.getMessage() for r in caplog.records if "dropped a malformed" in r.getMessage()
        ]
        assert any("'inference/events'" in m and "b'[[[[" in m for m in dropped)
        assert all(len(m) < 600 for m in dropped)  # an excerpt, never the whole payload
    # A client that connects afterwards receives the retained garbage first, and is fine.
    async with ComputeClient(svc.settings()) as late:
        await complete_a_job(late, upload)
        assert late.statistics().malformed_messages == 1
        assert "w-evil" not in late.workers
    # The local service read the same garbage on its capability subscription and is fine too.
    await svc.wait_for_workers_visible()
    assert "w-evil" not in svc.state.workers_seen
    assert errors_logged(caplog) == []
    await svc.publish_raw(b"", topic=worker_topic, retain=True)


@pytest.mark.slow
async def test_broker_restarts_and_connection_resets_log_no_error(
    local_compute_factory: Factory, upload: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Restarts the broker, so always on an embedded one (also when the suite targets mosquitto).
    async with local_compute_factory(tasks={"generic": generic_task}, mqtt_url=None) as svc:
        await _restarts_and_resets(svc, upload, caplog)


async def _restarts_and_resets(
    svc: LocalComputeService, upload: Path, caplog: pytest.LogCaptureFixture
) -> None:
    endpoint = urlsplit(svc.mqtt_url)
    assert endpoint.hostname is not None and endpoint.port is not None
    async with TcpProxy(endpoint.hostname, endpoint.port) as proxy:
        settings = svc.settings(
            mqtt_url=f"mqtt://127.0.0.1:{proxy.port}",
            reconnect_initial_delay=0.05,
            reconnect_max_delay=0.2,
        )
        async with ComputeClient(settings) as client:
            with caplog.at_level(logging.DEBUG):
                for lost in (1, 2, 3):
                    if lost == 1:
                        await svc.restart_broker()  # an orderly close
                    else:
                        await proxy.reset()  # a crash: the socket is reset (RST)
                    await wait_until(lambda: client.statistics().reconnects >= lost, timeout=10)  # noqa: B023
                    await wait_until(lambda: client.mqtt_connected, timeout=10)
                await svc.wait_for_broker_connection()
                await complete_a_job(client, upload)
    assert errors_logged(caplog) == []
    assert sum("MQTT feed lost" in r.getMessage() for r in caplog.records) == 3


# -- HTTP ----------------------------------------------------------------------------------------

BROKEN_ANSWERS: list[tuple[str, Callable[[], Answer], type[ClClientError]]] = [
    ("truncated body", truncated, TransportError),
    ("gzip that is not gzip", fake_gzip, ProtocolError),
    ("deeply nested JSON", lambda: body(DEEP), ProtocolError),
    ("5,000-digit integer", lambda: body(HUGE_INT), ProtocolError),
    ("bad UTF-8", lambda: body(b'{"job_id": "\xff\xfe"}'), ProtocolError),
    (
        "not JSON",
        lambda: body(b"<html>oops</html>", "200 OK", "Content-Type: text/html"),
        ProtocolError,
    ),
    ("bad chunked encoding", bad_chunked, TransportError),
    ("stall after the headers", stall, TransportError),
    ("deep JSON error body", lambda: body(DEEP, "500 Internal Server Error"), ServerError),
    (
        "another job's answer",
        lambda: json_body({"job_id": "other", "status": "completed"}),
        ProtocolError,
    ),
]
TOO_LARGE = ("larger than max_response_size", lambda: body(b" " * 300_000), ProtocolError)


@pytest.mark.parametrize(
    ("answer", "error"),
    [pytest.param(a, e, id=name) for name, a, e in [*BROKEN_ANSWERS, TOO_LARGE]],
)
@pytest.mark.slow
async def test_broken_http_answers_raise_library_errors(
    svc: LocalComputeService,
    upload: Path,
    answer: Callable[[], Answer],
    error: type[ClClientError],
) -> None:
    async with FaultyProxy(svc.compute_url) as proxy:
        settings = svc.settings(compute_url=proxy.url, http_timeout=1.0)
        if answer is TOO_LARGE[1]:
            settings = svc.settings(
                compute_url=proxy.url, http_timeout=1.0, max_response_size=256 * 1024
            )
        async with ComputeClient(settings) as client:
            done = await complete_a_job(client, upload)
            path = f"/jobs/{done.job_id}"
            proxy.answer(path, answer())
            with anyio.fail_after(5), pytest.raises(error) as info:
                await client.get_job(done.job_id)
            assert path in str(info.value)
            proxy.clear()
            await complete_a_job(client, upload)  # the same client goes on


@pytest.mark.slow
async def test_the_reconciler_survives_every_broken_answer(
    svc: LocalComputeService, upload: Path
) -> None:
    answers = itertools.cycle([make() for _, make, _ in BROKEN_ANSWERS])
    served: list[int] = []

    async def rotating(stream: SocketStream) -> None:
        served.append(1)
        await next(answers)(stream)

    async with FaultyProxy(svc.compute_url) as proxy:
        settings = svc.settings(compute_url=proxy.url, http_timeout=2.0, reconcile_interval=0.1)
        async with ComputeClient(settings) as client:
            gate = svc.faults.block_jobs(count=1)  # processing: checked every reconcile_interval
            created = await client.submit("generic", upload)
            await wait_until(lambda: svc.job(created.job_id).status == "processing")
            proxy.answer(
                lambda method, path: method == "GET" and path.startswith("/jobs/"), rotating
            )
            async with client.watch(created.job_id):
                await wait_until(lambda: len(served) >= len(BROKEN_ANSWERS) + 1, timeout=30)
            # (the stall may end by the reconciler's own deadline, which counts no error)
            assert client.statistics().reconcile_errors >= len(BROKEN_ANSWERS) - 1
            assert client.statistics().malformed_responses >= 5
            proxy.clear()
            gate.open()
            with anyio.fail_after(10):
                job = await client.wait(created.job_id)
            assert job.status == "completed"
            await complete_a_job(client, upload)


@pytest.mark.slow
async def test_http_timeout_bounds_the_whole_request(
    svc: LocalComputeService, upload: Path
) -> None:
    async with FaultyProxy(svc.compute_url) as proxy:
        settings = svc.settings(compute_url=proxy.url, http_timeout=1.0)
        async with ComputeClient(settings) as client:
            created = await client.submit("generic", upload)
            # One byte every 0.2 s: each read is quick, the whole answer would take 12 s.
            proxy.answer(f"/jobs/{created.job_id}", trickle(b" " * 60, 0.2))
            start = anyio.current_time()
            with anyio.fail_after(5), pytest.raises(TransportError, match="timed out") as info:
                await client.get_job(created.job_id)
            assert anyio.current_time() - start < 2.5
            assert f"/jobs/{created.job_id}" in str(info.value)
            proxy.clear()
            await complete_a_job(client, upload)


@pytest.mark.slow
async def test_one_slow_reconcile_request_does_not_hold_up_another_job(
    local_compute_factory: Factory, upload: Path
) -> None:
    async with (
        local_compute_factory(tasks={"generic": generic_task}, workers=2) as svc,
        FaultyProxy(svc.compute_url) as proxy,
    ):
        settings = svc.settings(compute_url=proxy.url, http_timeout=1.0, reconcile_interval=0.3)
        async with ComputeClient(settings) as client:
            gate = svc.faults.block_jobs(count=1)
            slow = await client.submit("generic", upload)
            proxy.answer(f"/jobs/{slow.job_id}", trickle(b" " * 100, 0.1))  # 10 s per answer
            async with client.watch(slow.job_id):
                await wait_until(lambda: proxy.answered >= 1, timeout=5)  # a round is stuck on it
                svc.faults.fail_jobs("silent failure", count=1)  # no MQTT event, as for real
                start = anyio.current_time()
                failing = await client.submit("generic", upload)
                with anyio.fail_after(3):
                    updates = [u async for u in client.watch(failing.job_id)]
                assert updates[-1].is_failed and anyio.current_time() - start < 3
            gate.open()
            proxy.clear()
            await complete_a_job(client, upload)


@pytest.mark.slow
async def test_a_forged_terminal_event_is_rechecked_not_trusted(
    svc: LocalComputeService, upload: Path
) -> None:
    async with ComputeClient(svc.settings(poll_interval=0.1, poll_max_interval=0.2)) as client:
        svc.pause_workers()
        created = await client.submit("generic", upload)
        finals: list[JobResponse] = []
        client.subscribe_job_updates(created.job_id, on_complete=finals.append)
        results: list[JobResponse] = []
        async with anyio.create_task_group() as tg:

            async def wait() -> None:
                results.append(await client.wait(created.job_id))

            tg.start_soon(wait)
            await anyio.sleep(0.1)
            await svc.publish_event(created.job_id, "completed", progress=100)  # forged
            await anyio.sleep(0.6)
            assert results == [] and finals == []  # the server still says queued
            assert client.statistics().unconfirmed_terminal >= 1
            svc.resume_workers()
        await wait_until(lambda: bool(finals))
    assert results[0].status == "completed" and results[0].task_output is not None
    assert finals[0].status == "completed" and finals[0].task_output is not None


# -- downloads ----------------------------------------------------------------------------------


@contextlib.contextmanager
def tmpfs(path: Path, options: str) -> Generator[Path]:
    """A tiny tmpfs mounted at ``path`` (the tests run as root, like CI)."""
    path.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


async def test_download_failures_are_library_errors_and_leave_nothing(
    svc: LocalComputeService, tmp_path: Path
) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(b"0123456789abcdef" * 16_384)  # 256 KiB
    async with ComputeClient(svc.settings()) as client:
        job = await complete_a_job(client, big)
        name = "input/big.bin"
        with pytest.raises(ParameterError, match="control characters"):
            await client.download_job_file(job.job_id, name, tmp_path / "a\x00b.bin")
        with pytest.raises(ParameterError, match="control characters"):
            await client.download_job_file(job.job_id, "input/b\x00ig.bin", tmp_path)
        with pytest.raises(DownloadError, match="control characters"):
            await client.download_job_files(job.job_id, ["input/\x00"], tmp_path / "many")
        blocker = tmp_path / "file.txt"
        blocker.write_text("a file, not a directory")
        with pytest.raises(DownloadError, match=r"file\.txt"):
            await client.download_job_file(job.job_id, name, blocker / "below" / "big.bin")
        with tmpfs(tmp_path / "small", "size=64k") as small:
            with pytest.raises(DownloadError, match="No space left") as info:
                await client.download_job_file(job.job_id, name, small / "big.bin")
            assert str(small / "big.bin") in str(info.value)
            assert list(small.iterdir()) == []  # no partial file left behind
        with (
            tmpfs(tmp_path / "ro", "ro,size=64k") as read_only,
            pytest.raises(DownloadError, match="Read-only file system"),
        ):
            await client.download_job_file(job.job_id, "output/result.json", read_only)
        # and the same client still downloads normally
        saved = await client.download_job_file(job.job_id, name, tmp_path / "ok.bin")
        assert saved.read_bytes() == big.read_bytes()


@pytest.mark.slow
async def test_server_provided_paths_with_control_characters_are_protocol_errors(
    svc: LocalComputeService, upload: Path, tmp_path: Path
) -> None:
    async with (
        FaultyProxy(svc.compute_url) as proxy,
        ComputeClient(svc.settings(compute_url=proxy.url)) as client,
    ):
        done = await complete_a_job(client, upload)
        faces = {
            "faces": [{"bbox": [0.1, 0.1, 0.2, 0.2], "confidence": 0.9, "file_path": "f\x00.png"}],
            "image_width": 10,
            "image_height": 10,
        }
        forged = {**done.model_dump(), "task_type": "face_detection", "task_output": faces}
        proxy.answer(f"/jobs/{done.job_id}", json_body(forged))
        with pytest.raises(ProtocolError, match="control characters"):
            await client.face_detection.download_crops(done.job_id, tmp_path / "crops")
        assert not (tmp_path / "crops").exists()
        proxy.clear()
        await complete_a_job(client, upload)


async def test_plugin_download_targets_are_checked_too(
    svc: LocalComputeService, upload: Path, tmp_path: Path
) -> None:
    async with (
        FaultyProxy(svc.compute_url) as proxy,
        ComputeClient(svc.settings(compute_url=proxy.url)) as client,
    ):
        done = await complete_a_job(client, upload)
        crop = {"bbox": [0.1, 0.1, 0.2, 0.2], "confidence": 0.9, "file_path": "output/result.json"}
        faces = {"faces": [crop], "image_width": 10, "image_height": 10}
        forged = {**done.model_dump(), "task_type": "face_detection", "task_output": faces}
        proxy.answer(f"/jobs/{done.job_id}", json_body(forged))
        blocker = tmp_path / "file.txt"
        blocker.write_text("a file, not a directory")
        with pytest.raises(DownloadError, match=r"file\.txt"):
            await client.face_detection.download_crops(done.job_id, blocker / "crops")
        with pytest.raises(ParameterError, match="control characters"):
            await client.face_detection.download_crops(done.job_id, tmp_path / "c\x00")
        hls = {"master_playlist": "output/adaptive.m3u8"}
        forged = {**done.model_dump(), "task_type": "hls_streaming", "task_output": hls}
        proxy.answer(f"/jobs/{done.job_id}", json_body(forged))
        with pytest.raises(ParameterError, match="control characters"):
            await client.hls_streaming.result(done.job_id, tmp_path / "h\x00")
        with pytest.raises(DownloadError, match=r"file\.txt"):
            await client.hls_streaming.result(done.job_id, blocker / "hls")
        proxy.clear()
        await complete_a_job(client, upload)


# -- settings, credentials, worker bookkeeping ------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"reconcile_interval": -1}, "reconcile_interval"),
        ({"compute_url": "localhost:8002"}, "compute_url"),
        ({"reconcile_intervall": 2}, "unknown setting 'reconcile_intervall'.*reconcile_interval"),
        ({"mqtt_url": "ftp://broker:21"}, "mqtt_url"),
        ({"http_timeout": "soon"}, "http_timeout"),
    ],
)
async def test_invalid_settings_are_parameter_errors_naming_the_field(
    overrides: dict[str, object], field: str
) -> None:
    with pytest.raises(ParameterError, match=field):
        ComputeClient(**overrides)  # pyright: ignore[reportArgumentType]
    with pytest.raises(ParameterError, match=field):
        ComputeClient(ClientSettings(), **overrides)  # pyright: ignore[reportArgumentType]
    with pytest.raises(ParameterError, match=field):
        ClientSettings(**overrides)  # pyright: ignore[reportArgumentType]


async def test_url_credentials_are_never_shown() -> None:
    with anyio.fail_after(5):
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        await listener.aclose()  # nothing listens there any more
    settings = ClientSettings(
        compute_url=f"http://user:s3cret-pw@127.0.0.1:{port}",
        mqtt_url=f"mqtt://user:s3cret-pw@127.0.0.1:{port}",
    )
    client = ComputeClient(settings, connect_timeout=1)
    shown = [repr(client), str(client), repr(settings), str(settings)]
    with pytest.raises(TransportError) as info:
        async with client:
            pass
    shown.append(str(info.value))
    for text in shown:
        assert "s3cret-pw" not in text
    assert "***@127.0.0.1" in repr(client) and "***@127.0.0.1" in str(info.value)
    with pytest.raises(ParameterError) as bad:
        ClientSettings(compute_url="ftp://user:s3cret-pw@host")
    assert "s3cret-pw" not in str(bad.value)


@pytest.mark.slow
async def test_closed_worker_watches_and_timed_out_worker_waits_are_released(
    svc: LocalComputeService,
) -> None:
    def live(kind: type) -> int:
        gc.collect()
        return sum(1 for o in gc.get_objects() if isinstance(o, kind))  # pyright: ignore[reportAny]

    async with ComputeClient(svc.settings()) as client:
        await client.wait_for_workers(["generic"], timeout=5)
        watches, events = live(WorkerWatch), live(anyio.Event)

        async def open_and_close() -> None:
            async with client.watch_workers() as changes:
                first = await changes.__anext__()
                assert first.worker_id == svc.worker().worker_id

        for _ in range(300):
            await open_and_close()
        for _ in range(300):
            await client.watch_workers().aclose()
        for _ in range(300):
            with pytest.raises(WorkerUnavailableError):
                await client.wait_for_workers(["no-such-capability"], timeout=0)
        assert live(WorkerWatch) == watches
        assert live(anyio.Event) <= events + 5
        # and the client still works with workers
        assert svc.worker().worker_id in await client.wait_for_workers(["generic"], timeout=5)
