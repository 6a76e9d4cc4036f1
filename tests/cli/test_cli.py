"""The ``cl-client`` command line: exit codes provoked for real, usage errors before any upload,
settings precedence, reruns, ``--no-wait``/``--keep-jobs``/``--timeout``, ``--no-mqtt``,
``--local``, authentication, help without the heavy imports, shell completion."""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import cast

import anyio
import pytest

from cl_client import ClientSettings
from cl_client.auth import SessionSettings
from cl_client.cli import ExitCode
from cl_client.cli._command import DEFAULTS, RootOptions
from cl_client.cli._context import Settings
from cl_client.testing import LocalAuthService, LocalComputeService
from tests.cli_util import cli, cli_process, service_args, subprocess_env
from tests.media import make_jpeg


def _images(directory: Path, count: int) -> list[Path]:
    return [make_jpeg(directory / f"img{i}.jpg", (48 + i, 32)) for i in range(count)]


def _dead_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = cast(tuple[str, int], sock.getsockname())[1]
    return port


# ----------------------------------------------------------------------------- exit codes


@pytest.mark.slow
async def test_exit_1_when_a_job_fails_and_the_others_go_on(
    local_compute: LocalComputeService, tmp_path: Path
) -> None:
    images = _images(tmp_path / "in", 3)
    local_compute.faults.fail_jobs(
        "decoder exploded",
        where=lambda job: str(job.params.get("input_path", "")).endswith("img1.jpg"),
    )
    result = await cli(*service_args(local_compute), "--json", "hash", "compute", *images)
    assert result.code == ExitCode.FAILED, result
    by_input = {r["input"]: r for r in result.records()}
    assert by_input[str(images[1])]["status"] == "failed"
    assert by_input[str(images[1])]["error"] == "decoder exploded"
    assert [by_input[str(p)]["status"] for p in (images[0], images[2])] == ["completed"] * 2
    assert "1 failed" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
async def test_exit_1_and_the_job_kept_on_timeout(
    local_compute: LocalComputeService, tmp_path: Path
) -> None:
    (image,) = _images(tmp_path, 1)
    rule = local_compute.faults.block_jobs()
    try:
        result = await cli(
            *service_args(local_compute), "--json", "hash", "compute", image, "--timeout", "0.3"
        )
    finally:
        rule.open()
    assert result.code == ExitCode.FAILED, result
    record = result.record()
    assert record["status"] == "timeout"
    job_id = record["job_id"]
    assert isinstance(job_id, str) and job_id in str(record["error"])
    assert local_compute.job(job_id)  # left on the server, to be followed with `job watch`


async def test_exit_2_for_usage_errors_before_any_upload(
    local_compute: LocalComputeService, tmp_path: Path
) -> None:
    (image,) = _images(tmp_path, 1)
    svc = service_args(local_compute)
    cases: list[tuple[list[str | Path], str]] = [
        (["image_conversion", "convert", image, "-f", "png", "--quality", "0"], "--quality"),
        (["image_conversion", "convert", image], "--format"),
        (["image_conversion", "convert", image, "-f", "heic"], "--format"),
        (["media_thumbnail", "generate", image, "--width", "0"], "--width"),
        (["face_detection", "detect", image, "--nms-threshold", "1.5"], "--nms-threshold"),
        (["hash", "compute", image, "-a", "sha1"], "--algorithm"),
        (["exif", "extract", image, "--tags", "Make,bad tag"], "--tags"),
        (["hls_streaming", "generate-manifest", image, "--variant", "720:50"], "--variant"),
        (["hls_streaming", "generate-manifest", image, "--variant", "1:200,"], "--variant"),
        (["hash", "compute", image, "-j", "0"], "--concurrency"),
        (["hash", "compute", image, "--priority", "11"], "--priority"),
        (["hash", "compute", image, "--no-wait", "-o", tmp_path / "x"], "--no-wait"),
        (["hash", "compute", tmp_path / "missing.jpg"], "no such file"),
        (["hash", "compute"], "INPUT"),
        (["hash", "frobnicate", image], "No such command"),
        (["--compute-url", "ftp://x", "hash", "compute", image], "--compute-url"),
        (["--mqtt-url", "http://x:1", "hash", "compute", image], "--mqtt-url"),
        (["--local", "--compute-url", "http://x:1", "hash", "compute", image], "--local"),
        (["--no-auth", "--username", "bob", "hash", "compute", image], "--no-auth"),
        (["--backend", "curio", "hash", "compute", image], "--backend"),
        (["hash", "compute", tmp_path, "--glob", "*.png"], "no input files"),
    ]
    for args, named in cases:
        result = await cli(*svc, *args)
        assert result.code == ExitCode.USAGE, (args, result)
        assert named in result.stderr, (args, result)
        assert result.stdout == "", (args, result)
        assert "Traceback" not in result.stderr
    assert not local_compute.state.jobs, "nothing was submitted"


@pytest.mark.slow
async def test_exit_2_when_outputs_would_clash(
    local_compute: LocalComputeService, tmp_path: Path
) -> None:
    a = make_jpeg(tmp_path / "a" / "photo.jpg", (40, 30))
    b = make_jpeg(tmp_path / "b" / "photo.jpg", (40, 30))
    svc = service_args(local_compute)
    clash = await cli(*svc, "media_thumbnail", "generate", a, b, "-o", tmp_path / "out")
    assert clash.code == ExitCode.USAGE and "both be saved as" in clash.stderr, clash
    (tmp_path / "file").write_text("x")
    into_file = await cli(*svc, "hash", "compute", a, b, "-o", tmp_path / "file")
    assert into_file.code == ExitCode.USAGE and "is a file" in into_file.stderr, into_file
    onto_input = await cli(
        *svc, "image_conversion", "convert", a, "-f", "jpg", "-o", tmp_path / "a" / "x/"
    )
    assert onto_input.code == 0, onto_input  # a different directory: fine
    replace_input = await cli(
        *svc, "image_conversion", "convert", a, "-f", "jpg", "-o", tmp_path / "a/"
    )
    assert replace_input.code == ExitCode.USAGE and "replace the input" in replace_input.stderr
    assert not local_compute.state.jobs


async def test_exit_3_when_the_service_is_down(tmp_path: Path) -> None:
    (image,) = _images(tmp_path, 1)
    url = f"http://127.0.0.1:{_dead_port()}"
    result = await cli("--compute-url", url, "hash", "compute", image)
    assert result.code == ExitCode.UNAVAILABLE, result
    assert url in result.stderr and "--compute-url" in result.stderr
    assert "Traceback" not in result.stderr
    verbose = await cli("-v", "--compute-url", url, "hash", "compute", image)
    assert verbose.code == ExitCode.UNAVAILABLE and "Traceback" in verbose.stderr


@pytest.mark.slow
async def test_exit_3_when_the_broker_is_down(
    local_compute: LocalComputeService, tmp_path: Path
) -> None:
    (image,) = _images(tmp_path, 1)
    broker = f"mqtt://127.0.0.1:{_dead_port()}"
    args = ["--compute-url", local_compute.compute_url, "--mqtt-url", broker]
    result = await cli(*args, "hash", "compute", image)
    assert result.code == ExitCode.UNAVAILABLE, result
    assert "MQTT broker" in result.stderr and "--no-mqtt" in result.stderr
    polled = await cli(*args, "--no-mqtt", "--json", "hash", "compute", image)
    assert polled.code == 0, polled
    assert polled.record()["status"] == "completed"


async def test_authentication_and_exit_3_for_refused_credentials(
    local_compute_factory: Callable[..., LocalComputeService], tmp_path: Path
) -> None:
    (image,) = _images(tmp_path, 1)
    async with (
        LocalAuthService(admin_username="admin", admin_password="secret") as auth,
        local_compute_factory(guest_mode=False, public_key_pem=auth.public_key_pem) as svc,
    ):
        auth.add_user("alice", "pw", permissions=["ai_inference_support"])
        base = [*service_args(svc), "--auth-url", auth.url]
        refused = await cli(*base, "-u", "alice", "--password", "nope", "hash", "compute", image)
        assert refused.code == ExitCode.UNAVAILABLE, refused
        assert "refused the credentials of 'alice'" in refused.stderr
        anonymous = await cli(*base, "hash", "compute", image)
        assert anonymous.code == ExitCode.UNAVAILABLE, anonymous
        assert "requires a login" in anonymous.stderr
        ok = await cli(*base, "--json", "-u", "alice", "--password", "pw", "hash", "compute", image)
        assert ok.code == 0, ok
        assert ok.record()["status"] == "completed"
        no_password = await cli(*base, "-u", "alice", "hash", "compute", image)
        assert no_password.code == ExitCode.USAGE  # stdin is not a terminal: no prompt
        assert "CL_PASSWORD" in no_password.stderr
        dead_auth = [*service_args(svc), "--auth-url", f"http://127.0.0.1:{_dead_port()}"]
        unreachable = await cli(*dead_auth, "-u", "a", "--password", "b", "hash", "compute", image)
        assert unreachable.code == ExitCode.UNAVAILABLE and "auth service" in unreachable.stderr


async def test_environment_settings_and_their_precedence(
    local_compute: LocalComputeService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (image,) = _images(tmp_path, 1)
    monkeypatch.setenv("COMPUTE_URL", local_compute.compute_url)
    monkeypatch.setenv("MQTT_URL", local_compute.mqtt_url)
    from_env = await cli("--json", "hash", "compute", image)
    assert from_env.code == 0, from_env
    dead = f"http://127.0.0.1:{_dead_port()}"
    flag_wins = await cli("--compute-url", dead, "hash", "compute", image)
    assert flag_wins.code == ExitCode.UNAVAILABLE and dead in flag_wins.stderr
    monkeypatch.setenv("COMPUTE_URL", dead)
    flag_wins_back = await cli(
        "--compute-url", local_compute.compute_url, "--json", "hash", "compute", image
    )
    assert flag_wins_back.code == 0, flag_wins_back


def test_settings_resolution_records_where_each_value_came_from() -> None:
    root = RootOptions(compute_url="http://flag:1", sources={"compute_url": "flag"})
    layer = ("profile work", {"compute_url": "http://p:1", "mqtt_url": "mqtt://p:2"})
    settings = Settings.resolve(root, [layer])
    assert settings.compute_url == "http://flag:1" and settings.source("compute_url") == "flag"
    assert settings.mqtt_url == "mqtt://p:2" and settings.source("mqtt_url") == "profile work"
    assert settings.auth_url == DEFAULTS["auth_url"] and settings.source("auth_url") == "default"
    assert settings.backend == "asyncio" and settings.mqtt_enabled
    local = Settings.resolve(RootOptions(local=True, username="bob", password="pw"))
    assert local.username is None and local.password is None


def test_cli_defaults_are_the_library_defaults() -> None:
    client, session = ClientSettings(), SessionSettings()
    assert DEFAULTS["compute_url"] == client.compute_url
    assert DEFAULTS["mqtt_url"] == client.mqtt_url
    assert DEFAULTS["auth_url"] == session.auth_url


# ---------------------------------------------------------------------------- batch options


@pytest.mark.slow
async def test_rerun_skips_existing_outputs_unless_overwrite(
    local_compute: LocalComputeService, tmp_path: Path
) -> None:
    images = _images(tmp_path / "in", 2)
    out = tmp_path / "thumbs"
    args = [
        *service_args(local_compute),
        "--json",
        "media_thumbnail",
        "generate",
        *images,
        "-o",
        out,
    ]
    first = await cli(*args)
    assert first.code == 0 and {r["status"] for r in first.records()} == {"completed"}, first
    thumb = out / "img0.thumb.jpg"
    before = thumb.stat().st_mtime_ns
    again = await cli(*args)
    assert again.code == 0, again
    assert {r["status"] for r in again.records()} == {"skipped"}
    assert thumb.stat().st_mtime_ns == before
    assert not local_compute.state.jobs
    forced = await cli(*args, "--overwrite")
    assert forced.code == 0 and {r["status"] for r in forced.records()} == {"completed"}
    assert thumb.stat().st_mtime_ns != before


@pytest.mark.slow
async def test_no_wait_prints_job_ids_and_keep_jobs_keeps_them(
    local_compute: LocalComputeService, tmp_path: Path
) -> None:
    images = _images(tmp_path, 3)
    submitted = await cli(*service_args(local_compute), "hash", "compute", *images, "--no-wait")
    assert submitted.code == 0, submitted
    ids = submitted.stdout.split()
    assert len(ids) == 3 and all(local_compute.job(i) for i in ids)
    kept = await cli(
        *service_args(local_compute), "--json", "hash", "compute", images[0], "--keep-jobs"
    )
    job_id = kept.record()["job_id"]
    assert isinstance(job_id, str) and local_compute.job(job_id).status == "completed"


async def test_without_output_nothing_is_saved_and_people_are_told(
    local_compute: LocalComputeService, tmp_path: Path
) -> None:
    (image,) = _images(tmp_path, 1)
    result = await cli(*service_args(local_compute), "media_thumbnail", "generate", image)
    assert result.code == 0, result
    assert "no --output given" in result.stderr
    assert "not saved" in result.stdout  # the summary table
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img0.jpg"]


async def test_local_runs_its_own_service(tmp_path: Path) -> None:
    (image,) = _images(tmp_path, 1)
    result = await cli("--local", "--json", "hash", "compute", image)
    assert result.code == 0, result
    assert result.record()["status"] == "completed"
    assert "local compute service at http://127.0.0.1:" in result.stderr


async def test_quiet_prints_only_results(
    local_compute: LocalComputeService, tmp_path: Path
) -> None:
    (image,) = _images(tmp_path, 1)
    result = await cli(*service_args(local_compute), "-q", "--json", "hash", "compute", image)
    assert result.code == 0 and result.stderr == "", result


# --------------------------------------------------------------- startup, help, completion


async def test_version_and_both_spellings() -> None:
    version = await cli("--version")
    assert version.code == 0 and version.stdout.startswith("cl-client ")
    for group in ("clip_embedding", "clip-embedding"):
        helped = await cli(group, "embed", "--help")
        assert helped.code == 0 and "--normalize" in helped.stdout
    for verb in ("generate-manifest", "generate_manifest"):
        helped = await cli("hls-streaming", verb, "--help")
        assert helped.code == 0 and "--variant" in helped.stdout
    typo = await cli("hsh")
    assert typo.code == ExitCode.USAGE and "hash" in typo.stderr


_IMPORT_PROBE = """
import json, sys
from cl_client.cli import main
for argv in {argvs!r}:
    try:
        main(argv)
    except SystemExit:
        pass
heavy = ["httpx", "pydantic", "paho", "aiomqtt", "anyio", "rich", "cl_client.testing",
         "cl_client._client", "fastapi"]
print(json.dumps([m for m in heavy if m in sys.modules]), file=sys.stderr)
"""


@pytest.mark.slow
async def test_help_imports_nothing_heavy() -> None:
    argvs = [
        ["--help"],
        ["--version"],
        *(
            [group, "--help"]
            for group in ("hash", "exif", "clip_embedding", "hls_streaming", "job", "workers")
        ),
        ["server", "cleanup", "--help"],
        ["local", "serve", "--help"],
        ["job", "download", "--help"],
        ["face_detection", "detect", "--help"],
        ["media_thumbnail", "generate", "--help"],
        ["image_conversion", "convert", "-h"],
    ]
    done = await anyio.run_process(
        [sys.executable, "-c", _IMPORT_PROBE.format(argvs=argvs)], env=subprocess_env()
    )
    imported = cast(list[str], json.loads(done.stderr.decode().strip().splitlines()[-1]))
    assert imported == [], f"--help imported {imported}"
    assert b"Usage: cl-client" in done.stdout


@pytest.mark.slow
async def test_shell_completion() -> None:
    result = await cli_process(
        env={
            "_CL_CLIENT_COMPLETE": "bash_complete",
            "COMP_WORDS": "cl-client hash co",
            "COMP_CWORD": "2",
        }
    )
    assert result.code == 0, result
    assert "plain,compute" in result.stdout
    groups = await cli_process(
        env={
            "_CL_CLIENT_COMPLETE": "bash_complete",
            "COMP_WORDS": "cl-client im",
            "COMP_CWORD": "1",
        }
    )
    assert "plain,image_conversion" in groups.stdout
    script = await cli_process(env={"_CL_CLIENT_COMPLETE": "bash_source"})
    assert "_CL_CLIENT_COMPLETE=bash_complete" in script.stdout
