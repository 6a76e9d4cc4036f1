"""``--journal FILE``: reruns skip what is done, re-attach to running jobs, resubmit failures
only when asked; a batch killed with SIGKILL and rerun submits every input exactly once."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import cast

import anyio
import pytest

from cl_client.cli import ExitCode
from cl_client.cli._journal import Journal
from cl_client.testing import LocalComputeService
from cl_client.testing.compute._jobs import JobRecord
from tests.cli_util import CliResult, cli, service_args, subprocess_env
from tests.media import make_jpeg
from tests.util import wait_until

pytestmark = pytest.mark.anyio


class Submissions:
    """Every job the local service's workers ran, by input file name (each job runs once)."""

    def __init__(self, svc: LocalComputeService) -> None:
        self.jobs: dict[str, str] = {}
        svc.faults.delay_jobs(0, where=self._see)  # never matches: it only records

    def _see(self, job: JobRecord) -> bool:
        self.jobs[job.job_id] = Path(str(job.params.get("input_path", ""))).name
        return False

    def per_input(self) -> Counter[str]:
        return Counter(self.jobs.values())


@pytest.fixture
async def svc4(
    local_compute_factory: Callable[..., LocalComputeService],
) -> AsyncIterator[LocalComputeService]:
    async with local_compute_factory(workers=4) as service:
        yield service


def _images(directory: Path, count: int) -> list[Path]:
    return [
        make_jpeg(directory / f"img{i:03d}.jpg", (16 + i % 7, 12 + i // 7)) for i in range(count)
    ]


@pytest.mark.slow
async def test_a_rerun_skips_done_inputs_and_reports_earlier_failures(
    svc4: LocalComputeService, tmp_path: Path
) -> None:
    seen = Submissions(svc4)
    images = _images(tmp_path / "in", 5)
    journal = tmp_path / "batch.journal"
    base = [*service_args(svc4), "--json", "hash", "compute", tmp_path / "in"]
    rule = svc4.faults.fail_jobs("bad pixels", where=lambda job: "img002" in str(job.params))
    first = await cli(*base, "-o", tmp_path / "out", "--journal", journal)
    assert first.code == ExitCode.FAILED, first
    assert seen.per_input() == Counter({p.name: 1 for p in images})
    rule.cancel()

    again = await cli(*base, "-o", tmp_path / "out", "--journal", journal)
    assert again.code == ExitCode.FAILED, again
    statuses = {Path(str(r["input"])).name: r["status"] for r in again.records()[:-1]}
    assert statuses["img002.jpg"] == "failed" and statuses["img000.jpg"] == "skipped"
    assert seen.per_input() == Counter({p.name: 1 for p in images})  # nothing sent again

    retried = await cli(*base, "-o", tmp_path / "out", "--journal", journal, "--retry-failed")
    assert retried.code == 0, retried
    assert seen.per_input()["img002.jpg"] == 2 and sum(seen.per_input().values()) == 6
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        f"img{i:03d}.hash.json" for i in range(5)
    ]

    shown = await cli("--json", "journal", "show", journal)
    assert shown.code == 0, shown
    summary = shown.record()
    assert summary["inputs"] == 5 and summary["submissions"] == 6
    assert summary["states"] == {"submitting": 0, "submitted": 0, "completed": 5, "failed": 0}
    people = await cli("journal", "show", journal)
    assert "completed   5" in people.stdout

    # other parameters are other work: md5 submits every input again
    md5 = await cli(*base, "-a", "md5", "--journal", journal)
    assert md5.code == 0, md5
    assert sum(seen.per_input().values()) == 11


@pytest.mark.slow
async def test_a_rerun_reattaches_to_running_jobs(
    svc4: LocalComputeService, tmp_path: Path
) -> None:
    seen = Submissions(svc4)
    images = _images(tmp_path / "in", 3)
    journal = tmp_path / "j.sqlite"
    base = [*service_args(svc4), "--json", "hash", "compute", *images, "--journal", journal]
    rule = svc4.faults.block_jobs()
    submitted = await cli(*base, "--no-wait")
    assert submitted.code == 0, submitted
    assert {r["status"] for r in submitted.records()[:-1]} == {"submitted"}
    failed = await cli("--json", "journal", "show", journal)
    assert len(failed.record()["running"]) == 3  # pyright: ignore[reportArgumentType]

    async def release() -> None:
        await anyio.sleep(0.5)
        rule.open()

    results: list[CliResult] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(release)
        results.append(await cli(*base))
    (resumed,) = results
    assert resumed.code == 0, resumed
    assert {r["status"] for r in resumed.records()[:-1]} == {"completed"}
    assert seen.per_input() == Counter({p.name: 1 for p in images})


async def test_journal_errors(tmp_path: Path) -> None:
    missing = await cli("journal", "show", tmp_path / "nope.sqlite")
    assert missing.code == ExitCode.USAGE and "no journal" in missing.stderr
    (tmp_path / "bad").write_text("not a database" * 100)
    bad = await cli("journal", "show", tmp_path / "bad")
    assert bad.code == ExitCode.USAGE and "not a usable journal" in bad.stderr
    image = make_jpeg(tmp_path / "a.jpg", (10, 10))
    retry = await cli("hash", "compute", image, "--retry-failed")
    assert retry.code == ExitCode.USAGE and "--journal" in retry.stderr


@pytest.mark.slow
async def test_a_batch_killed_with_sigkill_loses_nothing_and_submits_nothing_twice(
    svc4: LocalComputeService, tmp_path: Path
) -> None:
    seen = Submissions(svc4)
    images = _images(tmp_path / "in", 200)
    out = tmp_path / "out"
    journal = tmp_path / "batch.journal"
    command = [
        sys.executable, "-m", "cl_client", *service_args(svc4), "--json", "-q",
        "hash", "compute", str(tmp_path / "in"), "-o", str(out), "--journal", str(journal),
    ]  # fmt: skip
    kill_after = random.randint(10, 180)  # outputs on disk when the kill comes

    def saved() -> int:
        return len(list(out.glob("*.hash.json"))) if out.is_dir() else 0

    async with await anyio.open_process(
        command, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    ) as process:
        await wait_until(
            lambda: saved() >= kill_after or process.returncode is not None, timeout=120
        )
        process.send_signal(signal.SIGKILL)
        await process.wait()
    assert process.returncode == -signal.SIGKILL
    killed_at = saved()
    assert killed_at < 200  # it was killed in the middle
    # Uploads cut off by the kill: the server may have made their jobs, whose ids never came
    # back (the protocol has no way to find them), so these alone may be submitted again.
    journal_db = Journal(journal, create=False)
    try:
        in_flight = {Path(r.input).name for r in journal_db.rows() if r.state == "submitting"}
    finally:
        journal_db.close()
    assert len(in_flight) <= 8  # at most --concurrency

    rerun = await anyio.run_process(command, check=False, env=subprocess_env())
    assert rerun.returncode == 0, rerun.stderr.decode()
    records = CliResult(0, rerun.stdout.decode(), "").records()
    done_before = [r for r in records if r.get("status") == "skipped"]
    assert len(done_before) >= killed_at
    per_input = seen.per_input()
    assert set(per_input) == {p.name for p in images}  # every input was done
    twice = {name for name, n in per_input.items() if n > 1}
    assert twice <= in_flight, (twice, in_flight)  # only a cut-off upload is sent again
    assert max(per_input.values()) <= 2
    for image in images:
        digest = cast(object, json.loads((out / f"{image.stem}.hash.json").read_text()))
        assert digest, image
    assert not list(out.glob(".*partial"))

    before = len(seen.jobs)
    third = await anyio.run_process(command, check=False, env=subprocess_env())
    assert third.returncode == 0, third.stderr.decode()
    assert len(seen.jobs) == before  # a second rerun submits nothing
    summary = await cli("--json", "journal", "show", journal)
    assert summary.record()["states"] == {
        "submitting": 0, "submitted": 0, "completed": 200, "failed": 0
    }  # fmt: skip
