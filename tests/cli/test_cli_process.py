"""``cl-client`` as a real process (``python -m cl_client``) on the test's backend: results for
scripts, ``--local``, Ctrl-C in the middle of a batch, and the live display under a real
pseudo-terminal."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import signal
import struct
import sys
import termios
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
from anyio.abc import ByteReceiveStream, Process
from PIL import Image

from cl_client.cli import ExitCode
from cl_client.testing import LocalComputeService
from tests.cli_util import cli_process, service_args, subprocess_env
from tests.media import make_jpeg
from tests.util import wait_until

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _images(directory: Path, count: int) -> list[Path]:
    return [make_jpeg(directory / f"img{i:02d}.jpg", (64, 40 + i)) for i in range(count)]


async def _read_all(stream: ByteReceiveStream | None) -> str:
    chunks: list[bytes] = []
    if stream is not None:
        async for chunk in stream:
            chunks.append(chunk)
    return b"".join(chunks).decode()


@pytest.mark.slow
async def test_json_for_scripts_on_either_backend(
    local_compute: LocalComputeService, tmp_path: Path, anyio_backend: str
) -> None:
    images = _images(tmp_path / "in", 3)
    result = await cli_process(
        *service_args(local_compute),
        "--json",
        "exif",
        "extract",
        tmp_path / "in",
        backend=anyio_backend,
    )
    assert result.code == 0, result
    records = result.records()
    assert sorted(str(r["input"]) for r in records) == sorted(str(p) for p in images)
    assert all(r["status"] == "completed" for r in records)
    assert "3 input(s): 3 completed" in result.stderr


@pytest.mark.slow
async def test_local_in_a_subprocess(tmp_path: Path, anyio_backend: str) -> None:
    (image,) = _images(tmp_path, 1)
    result = await cli_process(
        "--local", "--json", "hash", "compute", image, "-a", "md5", backend=anyio_backend
    )
    assert result.code == 0, result
    assert result.record()["status"] == "completed"


def _remaining(svc: LocalComputeService) -> set[str]:
    return set(svc.state.jobs)


@pytest.mark.slow
async def test_ctrl_c_mid_batch_leaves_no_partial_file_and_names_running_jobs(
    local_compute_factory: Callable[..., LocalComputeService], tmp_path: Path, anyio_backend: str
) -> None:
    _images(tmp_path / "in", 12)
    out = tmp_path / "out"
    async with local_compute_factory(workers=2) as svc:
        svc.faults.delay_jobs(0.5)
        command = [
            sys.executable,
            "-m",
            "cl_client",
            *service_args(svc),
            "--backend",
            anyio_backend,
            "media_thumbnail",
            "generate",
            tmp_path / "in",
            "-o",
            out,
            "-j",
            "4",
        ]
        process: Process = await anyio.open_process(
            [os.fspath(part) for part in command], env=subprocess_env({"COLUMNS": "400"})
        )
        async with process:
            await wait_until(
                lambda: (
                    len(list(out.glob("*.thumb.jpg"))) >= 2
                    and sum(j.status in ("queued", "processing") for j in svc.state.jobs.values())
                    >= 2
                ),
                timeout=60,
            )
            process.send_signal(signal.SIGINT)
            with anyio.fail_after(30):
                stdout = await _read_all(process.stdout)
                stderr = await _read_all(process.stderr)
                code = await process.wait()
        assert code == ExitCode.INTERRUPTED, (stdout, stderr)
        match = re.search(r"still on the server: ([0-9a-f\- ]+)", stderr)
        assert match is not None, stderr
        printed = set(match.group(1).split())
        assert printed, stderr
        assert printed == _remaining(svc), "the jobs left on the server are exactly those named"
        assert "cl-client job watch" in stderr
        assert "Traceback" not in stderr
    saved = sorted(out.iterdir())
    assert saved, "what finished before Ctrl-C is kept"
    assert len(saved) < 12
    for path in saved:
        assert path.name.endswith(".thumb.jpg") and not path.name.startswith("."), path
        with Image.open(path) as img:
            img.load()  # complete JPEGs only
    for path in saved:  # every output saved is reported in the summary of what finished
        assert path.name in stdout, (path, stdout)


def _set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


async def _in_terminal(args: list[str]) -> tuple[int, str]:
    """Run ``python -m cl_client args`` under a pseudo-terminal (120x40); its exit code and
    everything the terminal received."""
    master, slave = pty.openpty()
    _set_size(slave, 40, 120)
    env = subprocess_env({"TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40"})
    for name in ("NO_COLOR", "FORCE_COLOR", "TERM_PROGRAM"):
        env.pop(name, None)
    command = [sys.executable, "-m", "cl_client", *args]
    process = await anyio.open_process(command, stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    chunks: list[bytes] = []

    def read_terminal() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the other side closed
                return
            if not data:
                return
            chunks.append(data)

    try:
        with anyio.fail_after(60):
            await anyio.to_thread.run_sync(read_terminal)
            code = await process.wait()
    finally:
        os.close(master)
        await process.aclose()
    return code, b"".join(chunks).decode(errors="replace")


@pytest.mark.slow
async def test_live_display_under_a_terminal_ends_in_the_summary(
    local_compute: LocalComputeService, tmp_path: Path, anyio_backend: str
) -> None:
    _images(tmp_path / "in", 6)
    local_compute.faults.delay_jobs(0.3)
    code, raw = await _in_terminal(
        [
            *service_args(local_compute),
            "--backend",
            anyio_backend,
            "hash",
            "compute",
            os.fspath(tmp_path / "in"),
            "-a",
            "md5",
            "-j",
            "3",
        ]
    )
    assert code == 0, raw
    assert "\x1b[?25l" in raw and "\x1b[2K" in raw, "a live display was drawn (and redrawn)"
    text = _ANSI.sub("", raw)
    assert "hash compute" in text and "━" in text  # the title and the overall bar
    assert re.search(r"\b(queued|processing)\b", text), "a line per job in flight"
    assert re.search(r"\d+\.\d/s", text), "the rate"
    last_frame = text.rindex("6/6")
    table = text.index("Input", last_frame)
    assert text.index("Status", table) < text.index("completed", table)
    assert re.search(r"6 input\(s\): 6 completed in [\d.]+ s\s*$", text), text[-300:]
    assert text.count("img0") >= 6  # every input is in the summary table


@pytest.mark.slow
async def test_job_watch_under_a_terminal(
    local_compute: LocalComputeService, tmp_path: Path, anyio_backend: str
) -> None:
    images = _images(tmp_path, 2)
    local_compute.faults.delay_jobs(0.5)
    submitted = await cli_process(
        *service_args(local_compute), "hash", "compute", *images, "--no-wait"
    )
    ids = submitted.stdout.split()
    assert len(ids) == 2, submitted
    code, raw = await _in_terminal(
        [*service_args(local_compute), "--backend", anyio_backend, "job", "watch", *ids]
    )
    assert code == 0, raw
    assert "\x1b[?25l" in raw, "a live table was drawn"
    text = _ANSI.sub("", raw)
    final = text.rindex("Job")
    for job_id in ids:
        assert job_id in text[final:]
    assert text[final:].count("completed") == 2
