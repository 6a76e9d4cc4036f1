"""``cl-client job``, ``workers``, ``server`` and ``local serve`` against the local services."""

from __future__ import annotations

import json
import re
import signal
import socket
import sys
from collections.abc import AsyncGenerator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import cast

import anyio
import pytest
from anyio.abc import ByteReceiveStream, Process

from cl_client import ComputeClient
from cl_client.cli import ExitCode
from cl_client.testing import LocalAuthService, LocalComputeService
from tests.cli_util import CliResult, cli, service_args, subprocess_env
from tests.media import make_face_jpeg, make_jpeg, make_video


async def _submit(svc: LocalComputeService, *args: str | Path) -> list[str]:
    """Submit with --no-wait; the job ids."""
    result = await cli(*service_args(svc), *args, "--no-wait")
    assert result.code == 0, result
    return result.stdout.split()


# ------------------------------------------------------------------------------------ job


@pytest.mark.slow
async def test_job_get_wait_delete(local_compute: LocalComputeService, tmp_path: Path) -> None:
    image = make_jpeg(tmp_path / "a.jpg", (40, 30))
    (job_id,) = await _submit(local_compute, "hash", "compute", image)
    svc = service_args(local_compute)
    waited = await cli(*svc, "--json", "job", "wait", job_id, "--timeout", "30")
    assert waited.code == 0, waited
    assert waited.record()["status"] == "completed"
    got = await cli(*svc, "--json", "job", "get", job_id)
    async with ComputeClient(local_compute.settings()) as client:
        expected = await client.get_job(job_id)
    assert got.record() == expected.model_dump(mode="json")
    people = await cli(*svc, "job", "get", job_id, "no-such-job")
    assert people.code == ExitCode.FAILED, people
    assert job_id in people.stdout and "completed (100%)" in people.stdout
    assert "output/hash.json" in people.stdout
    assert "job no-such-job not found" in people.stderr
    deleted = await cli(*svc, "job", "delete", job_id)
    assert deleted.code == 0 and f"deleted {job_id}" in deleted.stdout, deleted
    again = await cli(*svc, "--json", "job", "delete", job_id)
    assert again.code == ExitCode.FAILED and "not found" in again.stderr
    assert not local_compute.state.jobs


@pytest.mark.slow
async def test_job_wait_failures_and_timeouts_exit_1(
    local_compute: LocalComputeService, tmp_path: Path
) -> None:
    image = make_jpeg(tmp_path / "a.jpg", (40, 30))
    local_compute.faults.fail_jobs("no luck", count=1)
    (failing,) = await _submit(local_compute, "hash", "compute", image)
    svc = service_args(local_compute)
    failed = await cli(*svc, "job", "wait", failing)
    assert failed.code == ExitCode.FAILED and "no luck" in failed.stdout, failed
    rule = local_compute.faults.block_jobs()
    try:
        (blocked,) = await _submit(local_compute, "hash", "compute", image)
        late = await cli(*svc, "job", "wait", blocked, "--timeout", "0.3")
        assert late.code == ExitCode.FAILED, late
        assert f"still running after 0.3 s: {blocked}" in late.stderr
        unknown = await cli(*svc, "job", "wait", "nope", "--timeout", "10")
        assert unknown.code == ExitCode.FAILED and "job nope not found" in unknown.stderr
    finally:
        rule.open()


@pytest.mark.slow
async def test_job_watch_lines_and_json(local_compute: LocalComputeService, tmp_path: Path) -> None:
    images = [make_jpeg(tmp_path / f"{n}.jpg", (40, 30)) for n in "ab"]
    local_compute.faults.delay_jobs(0.3)
    ids = await _submit(local_compute, "hash", "compute", *images)
    svc = service_args(local_compute)
    watched = await cli(*svc, "--json", "job", "watch", *ids)
    assert watched.code == 0, watched
    updates = watched.records()
    for job_id in ids:
        statuses = [u["status"] for u in updates if u["job_id"] == job_id]
        assert statuses[-1] == "completed", updates
    plain = await cli(*svc, "job", "watch", ids[0])  # already finished: one line, then the table
    assert plain.code == 0, plain
    assert re.search(rf"\d\d:\d\d:\d\d  {ids[0]}  completed\s+100%", plain.stdout), plain
    local_compute.faults.fail_jobs("broken", count=1)
    (failing,) = await _submit(local_compute, "hash", "compute", images[0])
    failed = await cli(*svc, "job", "watch", failing, "nope")
    assert failed.code == ExitCode.FAILED, failed
    assert "broken" in failed.stdout and "job nope not found" in failed.stderr
    rule = local_compute.faults.block_jobs()
    try:
        (blocked,) = await _submit(local_compute, "hash", "compute", images[0])
        late = await cli(*svc, "job", "watch", blocked, "--timeout", "0.3")
        assert late.code == ExitCode.FAILED and blocked in late.stderr, late
    finally:
        rule.open()


@pytest.mark.slow
async def test_job_download_one_file_and_everything(
    local_compute: LocalComputeService, tmp_path: Path
) -> None:
    svc = service_args(local_compute)
    face = make_face_jpeg(tmp_path / "two.jpg", 2, (320, 160))
    (detect,) = await _submit(local_compute, "face_detection", "detect", face)
    video = make_video(tmp_path / "clip.mp4", seconds=1, size=(96, 64))
    assert video is not None
    (hls,) = await _submit(local_compute, "hls_streaming", "generate-manifest", video)
    (thumb,) = await _submit(local_compute, "media_thumbnail", "generate", face)
    assert (await cli(*svc, "job", "wait", detect, hls, thumb)).code == 0

    one = await cli(*svc, "job", "download", thumb, "output/thumbnail.jpg", tmp_path / "t.jpg")
    assert one.code == 0 and (tmp_path / "t.jpg").stat().st_size > 0, one
    exists = await cli(*svc, "job", "download", thumb, "output/thumbnail.jpg", tmp_path / "t.jpg")
    assert exists.code == ExitCode.FAILED and "already exists" in exists.stderr
    missing = await cli(*svc, "job", "download", thumb, "output/nope.jpg", tmp_path)
    assert missing.code == ExitCode.FAILED and "404" in missing.stderr, missing

    faces = await cli(*svc, "--json", "job", "download", detect, "--all", tmp_path / "faces")
    assert faces.code == 0, faces
    saved = sorted(p.name for p in (tmp_path / "faces").iterdir())
    assert saved == ["face_0.png", "face_1.png", "face_detection.json"]
    assert len(cast(list[str], faces.record()["outputs"])) == 3

    bundle = await cli(*svc, "job", "download", hls, "--all", tmp_path / "hls")
    assert bundle.code == 0, bundle
    master = tmp_path / "hls" / "adaptive.m3u8"
    for uri in [ln for ln in master.read_text().splitlines() if ln and not ln.startswith("#")]:
        playlist = tmp_path / "hls" / uri
        for segment in [
            ln for ln in playlist.read_text().splitlines() if ln and not ln.startswith("#")
        ]:
            assert (playlist.parent / segment).stat().st_size > 0
    assert not list((tmp_path / "hls").glob(".*")), "no staging directory left"

    usage = [
        ["job", "download", thumb],
        ["job", "download", thumb, "a", "b", "c"],
        ["job", "download", thumb, "--all", "a", "b"],
    ]
    for args in usage:
        result = await cli(*svc, *args)
        assert result.code == ExitCode.USAGE, (args, result)
    local_compute.faults.fail_jobs("nope", count=1)
    (failed,) = await _submit(local_compute, "hash", "compute", face)
    await cli(*svc, "job", "wait", failed)
    refused = await cli(*svc, "job", "download", failed, "--all", tmp_path / "x")
    assert refused.code == ExitCode.FAILED and "failed: nope" in refused.stderr
    rule = local_compute.faults.block_jobs()
    try:
        (running,) = await _submit(local_compute, "hash", "compute", face)
        early = await cli(*svc, "job", "download", running, "--all", tmp_path / "x")
        assert early.code == ExitCode.FAILED and "job wait" in early.stderr, early
    finally:
        rule.open()


# -------------------------------------------------------------------------------- workers


@pytest.mark.slow
async def test_workers_list_wait_and_watch(
    local_compute_factory: Callable[..., LocalComputeService],
) -> None:
    async with local_compute_factory(workers={"w-one": ["hash", "exif"]}) as svc:
        args = service_args(svc)
        listed = await cli(*args, "--json", "workers", "list")
        assert listed.code == 0, listed
        assert listed.record() == {
            "worker_id": "w-one",
            "capabilities": ["hash", "exif"],
            "idle_count": 1,
            "timestamp": listed.record()["timestamp"],
        }
        people = await cli(*args, "workers", "list")
        assert "w-one" in people.stdout and "exif, hash" in people.stdout
        polled = await cli(*args, "--no-mqtt", "workers", "list")
        assert polled.code == 0 and "hash\t1 idle" in polled.stdout, polled
        ready = await cli(*args, "workers", "wait", "hash", "--timeout", "5")
        assert ready.code == 0 and "w-one" in ready.stdout, ready
        missing = await cli(*args, "workers", "wait", "hash", "clip_embedding", "--timeout", "0.2")
        assert missing.code == ExitCode.FAILED, missing
        assert "no worker offers clip_embedding" in missing.stderr

        async def add_worker() -> None:
            await anyio.sleep(0.5)
            await svc.add_worker("w-two", ["clip_embedding"])

        watched: CliResult | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(add_worker)
            watched = await cli(*args, "--json", "workers", "watch", "--timeout", "1.5")
        assert watched is not None and watched.code == 0, watched
        assert [r["worker_id"] for r in watched.records()][:2] == ["w-one", "w-two"]
        lines = await cli(*args, "workers", "watch", "--timeout", "0.3")
        assert "w-one  idle 1" in lines.stdout and "w-two" in lines.stdout, lines
        no_mqtt = await cli(*args, "--no-mqtt", "workers", "watch")
        assert no_mqtt.code == ExitCode.USAGE and "needs MQTT" in no_mqtt.stderr


# --------------------------------------------------------------------------------- server


@pytest.mark.slow
async def test_server_commands_as_admin_and_as_a_user(
    local_compute_factory: Callable[..., LocalComputeService],
) -> None:
    async with (
        LocalAuthService(admin_username="root", admin_password="rootpw") as auth,
        local_compute_factory(guest_mode=False, public_key_pem=auth.public_key_pem) as svc,
    ):
        auth.add_user("bob", "bobpw", permissions=["ai_inference_support"])
        base = [*service_args(svc), "--auth-url", auth.url]
        admin = [*base, "-u", "root", "--password", "rootpw"]
        info = await cli(*base, "--json", "server", "info")  # GET / needs no login
        assert info.code == 0, info
        assert info.record()["auth_required"] is True
        people = await cli(*base, "server", "info")
        assert "auth required  yes" in people.stdout
        config = await cli(*admin, "--json", "server", "config")
        assert config.code == 0 and config.record()["guest_mode"] is False, config
        on = await cli(*admin, "server", "guest-mode", "ON")
        assert on.code == 0 and "guest mode  on" in on.stdout, on
        assert svc.guest_mode
        off = await cli(*admin, "--json", "server", "guest-mode", "off")
        assert off.record()["guest_mode"] is False and not svc.guest_mode
        shown = await cli(*admin, "server", "guest-mode")
        assert "guest mode  off" in shown.stdout and "updated by" in shown.stdout
        storage = await cli(*admin, "--json", "server", "storage")
        assert storage.record() == {"total_size": 0, "job_count": 0}, storage
        assert "0 B" in (await cli(*admin, "server", "storage")).stdout
        cleaned = await cli(*admin, "server", "cleanup", "--days", "7", "--yes")
        assert cleaned.code == 0 and "deleted  0 job(s)" in cleaned.stdout, cleaned
        unconfirmed = await cli(*admin, "server", "cleanup", "--days", "7")
        assert unconfirmed.code == ExitCode.USAGE and "--yes" in unconfirmed.stderr
        user = await cli(*base, "-u", "bob", "--password", "bobpw", "server", "config")
        assert user.code == ExitCode.UNAVAILABLE, user
        assert "Admin access required" in user.stderr


# ---------------------------------------------------------------------------- local serve


@asynccontextmanager
async def _serving(backend: str, *args: str) -> AsyncGenerator[tuple[Process, dict[str, object]]]:
    """``cl-client --json local serve ARGS`` as a process, and the URLs it printed."""
    command = [sys.executable, "-m", "cl_client", "--backend", backend, "--json", "local", "serve"]
    process = await anyio.open_process([*command, *args], env=subprocess_env())
    async with process:
        assert process.stdout is not None
        with anyio.fail_after(60):
            first = await process.stdout.receive()
        yield process, cast(dict[str, object], json.loads(first.decode().splitlines()[0]))


async def _read_all(stream: ByteReceiveStream | None) -> str:
    chunks: list[bytes] = []
    if stream is not None:
        async for chunk in stream:
            chunks.append(chunk)
    return b"".join(chunks).decode()


@pytest.mark.slow
async def test_local_serve_runs_until_ctrl_c(tmp_path: Path, anyio_backend: str) -> None:
    image = make_jpeg(tmp_path / "a.jpg", (40, 30))
    ports = ["--compute-port", "0", "--mqtt-port", "0", "--auth-port", "0"]
    async with _serving(anyio_backend, "--auth", "--workers", "1", *ports) as (process, urls):
        assert urls["guest_mode"] is False and urls["workers"] == 1
        args = [
            "--compute-url",
            str(urls["compute_url"]),
            "--mqtt-url",
            str(urls["mqtt_url"]),
            "--auth-url",
            str(urls["auth_url"]),
        ]
        login = ["-u", "admin", "--password", "admin"]
        done = await cli(*args, *login, "--json", "hash", "compute", image)
        assert done.code == 0 and done.record()["status"] == "completed", done
        process.send_signal(signal.SIGINT)
        with anyio.fail_after(30):
            stderr = await _read_all(process.stderr)
            code = await process.wait()
    assert code == 0, stderr  # Ctrl-C is how a server is meant to stop
    assert "Ctrl-C stops it" in stderr and "stopping" in stderr
    assert "Traceback" not in stderr


async def test_local_serve_on_a_port_in_use() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(cast(tuple[str, int], busy.getsockname())[1])
        result = await cli("local", "serve", "--compute-port", port, "--mqtt-port", "0")
    assert result.code == ExitCode.USAGE, result
    assert "already in use" in result.stderr and "--compute-port" in result.stderr
