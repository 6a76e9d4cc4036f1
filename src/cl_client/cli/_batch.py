"""The batch engine behind every plugin command: inputs, output names, parallel submission
through the library's :func:`~cl_client.plugins.run_parallel`, live progress, results.

For each input, in parallel under ``--concurrency``:

1. submit it (the plugin's own submission method, with an ``on_progress`` callback that feeds
   the live display from MQTT);
2. wait for the job (``client.wait``, MQTT with HTTP reconciliation) under ``--timeout``;
3. fetch the typed result and save what the job produced into a staging directory beside the
   destination, then move it into place, so an interrupted run leaves no partial file;
4. delete the job (unless ``--keep-jobs``) and report the outcome: a JSON line at once with
   ``--json``, a line or the live display on stderr, the summary table at the end.

With ``--journal FILE`` (:mod:`._journal`) each input is recorded before its upload starts and
after each step, so a rerun skips what is done and re-attaches to jobs still running.

A failed input never stops the others. Ctrl-C stops submitting, cancels what is in flight and
reports the jobs left running on the server.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast

import anyio
import anyio.lowlevel

from ._command import CliError, ExitCode
from ._context import App, describe_error
from ._display import BatchDisplay, make_display, print_summary, totals_line
from ._inputs import Item, plan_items
from ._journal import Journal, content_hash, fingerprint
from ._plugin import BatchOptions, ItemResult, PluginTask

if TYPE_CHECKING:
    from cl_client import ComputeClient, JobResponse, JobUpdate

__all__ = ["ItemOutcome", "run_batch", "staged"]

Status = Literal["completed", "failed", "timeout", "skipped", "submitted", "interrupted"]

_DELETE_TIMEOUT = 10.0
UPLOAD_GRACE = 5.0
"""After Ctrl-C, how long an upload in progress may go on (so its job id is known)."""


@dataclass
class ItemOutcome:
    """How one input ended."""

    item: Item
    status: Status
    result: ItemResult | None = None
    error: str | None = None
    elapsed: float | None = None
    code: ExitCode = ExitCode.OK

    @property
    def ok(self) -> bool:
        return self.status in ("completed", "skipped", "submitted")

    @property
    def outputs(self) -> list[Path]:
        return self.result.outputs if self.result is not None else []

    def to_json(self, task_type: str) -> dict[str, object]:
        """The NDJSON record of this input."""
        return {
            "input": self.item.label,
            "task_type": task_type,
            "job_id": self.item.job_id,
            "status": self.status,
            "result": self.result.fields if self.result is not None else None,
            "outputs": [str(p) for p in self.outputs],
            "error": self.error,
            "elapsed": round(self.elapsed, 3) if self.elapsed is not None else None,
        }


# ------------------------------------------------------------------------------------ engine


def _publish(staging: Path, directory: Path, overwrite: bool) -> None:
    """Move everything in ``staging`` into ``directory`` (replacing only with ``overwrite``)."""
    for entry in sorted(staging.iterdir()):
        dest = directory / entry.name
        if dest.exists() or dest.is_symlink():
            if not overwrite:
                raise CliError(f"{dest} already exists (pass --overwrite to replace it)")
            if dest.is_dir() and not dest.is_symlink():
                shutil.rmtree(dest)
            else:
                dest.unlink()
        os.replace(entry, dest)


@asynccontextmanager
async def staged(directory: Path, *, overwrite: bool) -> AsyncGenerator[Path]:
    """An empty hidden directory inside ``directory`` (created if needed) to download into.

    When the block ends normally, its contents are moved into ``directory``; in any case it is
    removed, so an interrupted download leaves no partial file. The path is absolute, so the
    paths the library returns (some resolve their directory) map back with ``relative_to``.
    """
    await anyio.Path(directory).mkdir(parents=True, exist_ok=True)
    staging = Path(
        await anyio.to_thread.run_sync(
            lambda: tempfile.mkdtemp(
                prefix=".cl-client-", suffix=".partial", dir=directory.resolve()
            )
        )
    )
    try:
        yield staging
        # Once the files are moved into place the outcome must be reported: no cancellation
        # between here and the report (deleting the job is shielded too).
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(_publish, staging, directory, overwrite)
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(lambda: shutil.rmtree(staging, ignore_errors=True))


class _Journaled:
    """The batch's journal, spoken in items."""

    def __init__(self, journal: Journal, task_type: str) -> None:
        self.journal = journal
        self.task_type = task_type

    def plan(self, items: Sequence[Item], task: PluginTask) -> None:
        """Give each item its key: the task, its parameters, the input, its output, its hash."""
        attributes = cast(dict[str, object], vars(task))
        params = {k: v for k, v in attributes.items() if not k.startswith("_")}
        for item in items:
            target = str(item.target) if item.target is not None else None
            item.params = fingerprint(self.task_type, params, item.label, target)
            item.key = Journal.key(item.params, item.digest)

    def submitting(self, item: Item) -> None:
        assert item.key is not None
        self.journal.submitting(
            item.key,
            label=item.label,
            task_type=self.task_type,
            digest=item.digest,
            params=item.params,
        )

    def submitted(self, item: Item, job_id: str) -> None:
        assert item.key is not None
        self.journal.submitted(item.key, job_id)

    def completed(self, item: Item, outputs: Sequence[Path]) -> None:
        assert item.key is not None
        self.journal.completed(item.key, outputs)

    def failed(self, item: Item, error: str) -> None:
        if item.key is not None:
            self.journal.failed(item.key, error)


def _prepare(items: Sequence[Item]) -> None:
    """Hash every input, and remove the staging directories a killed run left behind."""
    for item in items:
        item.digest = content_hash(item.path)
        target = item.target
        if target is not None and target.parent.is_dir():
            for stale in target.parent.glob(".cl-client-*.partial"):
                shutil.rmtree(stale, ignore_errors=True)


class _Runner:
    """Runs the items of one batch against one client."""

    def __init__(
        self,
        app: App,
        client: ComputeClient,
        task: PluginTask,
        options: BatchOptions,
        display: BatchDisplay,
        report: Callable[[ItemOutcome], None],
        journal: _Journaled | None = None,
    ) -> None:
        self.journal = journal
        self.app = app
        self.client = client
        self.task = task
        self.options = options
        self.display = display
        self.report = report
        self.in_flight: dict[int, Item] = {}
        self.uploads: set[anyio.CancelScope] = set()

    def interrupted(self) -> None:
        """Ctrl-C: the uploads in progress may finish within the grace period."""
        if self.uploads:
            self.app.output.info(
                f"interrupted: giving {len(self.uploads)} upload(s) up to {UPLOAD_GRACE:g} s to "
                "finish, to learn their job ids"
            )
        for upload in self.uploads:
            upload.deadline = min(upload.deadline, anyio.current_time() + UPLOAD_GRACE)

    async def process(self, item: Item) -> ItemOutcome:
        """Run one item and report its outcome at once (here, not in the consumer, so an
        outcome is never lost when Ctrl-C cancels the batch right after a file was saved)."""
        item.started = anyio.current_time()
        self.in_flight[item.index] = item
        self.display.job_state(item, "uploading")
        try:
            outcome = await self._process(item)
        except Exception as exc:
            code, message = describe_error(exc)
            outcome = ItemOutcome(item, "failed", error=message, code=code)
            if self.journal is not None and item.job_id is None:
                self.journal.failed(item, message)
        outcome.elapsed = anyio.current_time() - item.started
        del self.in_flight[item.index]
        self.report(outcome)
        return outcome

    async def _process(self, item: Item) -> ItemOutcome:
        options = self.options

        def on_progress(update: JobUpdate) -> None:
            self.display.job_state(item, update.status)

        # An upload in progress when Ctrl-C arrives gets a short grace period: once the server
        # has the file it has created a job, and the job's id must be learnt to be reported.
        await anyio.lowlevel.checkpoint()  # no new upload once Ctrl-C was pressed
        job_id = await self._reattach(item) if item.attach is not None else None
        if job_id is None:
            job_id = await self._submit(item, on_progress)
        if options.no_wait:
            return ItemOutcome(item, "submitted")
        with anyio.move_on_after(options.timeout if options.timeout is not None else math.inf):
            final = await self.client.wait(job_id, raise_on_error=False)
            return await self._finish(item, final)
        return ItemOutcome(
            item,
            "timeout",
            error=f"did not finish within {options.timeout:g} s; job {job_id} is still "
            "on the server",
            code=ExitCode.FAILED,
        )

    async def _reattach(self, item: Item) -> str | None:
        """The job an earlier run left running for ``item``, if the server still has it."""
        from cl_client import NotFoundError

        assert item.attach is not None
        try:
            job = await self.client.get_job(item.attach)
        except NotFoundError:
            self.app.output.warn(
                f"{item.label}: job {item.attach} of an earlier run is gone; submitting again"
            )
            return None
        item.job_id = job.job_id
        self.display.job_state(item, job.status)
        return job.job_id

    async def _submit(self, item: Item, on_progress: Callable[[JobUpdate], None]) -> str:
        if self.journal is not None:
            self.journal.submitting(item)  # before anything is sent
        job: JobResponse | None = None
        with anyio.CancelScope(shield=True) as upload:
            self.uploads.add(upload)
            try:
                job = await self.task.submit(
                    self.client, item.path, self.options.priority, on_progress
                )
            finally:
                self.uploads.discard(upload)
        if job is None:  # the grace period ran out: the upload was abandoned
            await anyio.lowlevel.checkpoint()  # the batch is cancelled: this raises
            raise CliError("the upload was abandoned")  # pragma: no cover
        item.job_id = job.job_id
        if self.journal is not None:
            self.journal.submitted(item, job.job_id)
        self.display.job_state(item, job.status)
        return job.job_id

    async def _finish(self, item: Item, final: JobResponse) -> ItemOutcome:
        if final.is_failed:
            if self.journal is not None:
                self.journal.failed(item, final.error_message or "the job failed")
            await self._delete(final.job_id)
            return ItemOutcome(
                item,
                "failed",
                error=final.error_message or "the job failed (no error message given)",
                code=ExitCode.FAILED,
            )
        self.display.job_state(item, "saving" if item.target is not None else "fetching")
        result = await self._collect(item, final)
        if self.journal is not None:
            self.journal.completed(item, result.outputs)
        await self._delete(final.job_id)
        return ItemOutcome(item, "completed", result=result)

    async def _collect(self, item: Item, job: JobResponse) -> ItemResult:
        target = item.target
        if target is None:
            return await self.task.collect(self.client, job, None)
        async with staged(target.parent, overwrite=self.options.overwrite) as staging:
            result = await self.task.collect(self.client, job, staging / target.name)
        return replace(
            result, outputs=[target.parent / path.relative_to(staging) for path in result.outputs]
        )

    async def _delete(self, job_id: str) -> None:
        if self.options.keep_jobs:
            return
        from cl_client import ClClientError

        with anyio.CancelScope(shield=True), anyio.move_on_after(_DELETE_TIMEOUT):
            try:
                await self.client.delete_job(job_id)
            except ClClientError as exc:
                self.app.output.warn(f"could not delete job {job_id}: {exc}")


@dataclass
class _Tally:
    outcomes: list[ItemOutcome] = field(default_factory=list[ItemOutcome])

    def add(self, outcome: ItemOutcome) -> None:
        self.outcomes.append(outcome)

    def code(self) -> ExitCode:
        codes = {o.code for o in self.outcomes if not o.ok}
        if ExitCode.UNAVAILABLE in codes:
            return ExitCode.UNAVAILABLE
        if ExitCode.USAGE in codes:
            return ExitCode.USAGE
        return ExitCode.FAILED if codes else ExitCode.OK


async def run_batch(app: App, task: PluginTask, options: BatchOptions) -> ExitCode:
    """Run one plugin over every input; the exit code says how it went."""
    items = plan_items(task, options)
    if options.journal is None:
        return await _run(app, task, options, items, None)
    journal = Journal(options.journal)
    try:
        journaled = _Journaled(journal, task.task_type)
        await anyio.to_thread.run_sync(_prepare, items)
        journaled.plan(items, task)
        return await _run(app, task, options, items, journaled)
    finally:
        journal.close()


def _from_journal(journaled: _Journaled, item: Item, options: BatchOptions) -> ItemOutcome | None:
    """What the journal says of ``item``: an outcome if nothing is to be done, else None
    (with ``item.attach`` set when its job of an earlier run may still be running)."""
    assert item.key is not None
    row = journaled.journal.get(item.key)
    if row is None:
        return None
    item.job_id = row.job_id
    if row.state == "completed":
        return ItemOutcome(
            item,
            "skipped",
            result=ItemResult("done in an earlier run", outputs=[Path(p) for p in row.outputs]),
            error=f"done in an earlier run (journal {options.journal})",
        )
    if row.state == "failed" and not options.retry_failed:
        return ItemOutcome(
            item,
            "failed",
            error=f"failed in an earlier run: {row.error} (--retry-failed resubmits it)",
            code=ExitCode.FAILED,
        )
    if row.state == "submitted":
        item.attach = row.job_id
    else:
        item.job_id = None
    return None


async def _run(
    app: App,
    task: PluginTask,
    options: BatchOptions,
    items: list[Item],
    journaled: _Journaled | None,
) -> ExitCode:
    tally = _Tally()
    todo: list[Item] = []
    for item in items:
        if journaled is not None:
            earlier = _from_journal(journaled, item, options)
            if earlier is not None:
                tally.add(earlier)
                continue
        if item.target is not None and not options.overwrite and item.target.exists():
            if journaled is not None and item.attach is not None:
                # Killed after its output was saved but before the journal heard of it.
                journaled.completed(item, [item.target])
            tally.add(
                ItemOutcome(
                    item, "skipped", error=f"{item.target} exists (--overwrite replaces it)"
                )
            )
        else:
            todo.append(item)
    if options.output is None and task.saves_files_only and not options.no_wait:
        app.output.info(
            "no --output given: what the jobs produce is not saved (use -o DIR to keep it)"
        )
    started = anyio.current_time()
    runner: _Runner | None = None
    finished = False
    try:
        async with app.open_client() as client:
            await _check_workers(app, client, task.task_type)
            display = make_display(app, task, total=len(items))
            async with display:

                def report(outcome: ItemOutcome) -> None:
                    tally.add(outcome)
                    display.finished(outcome)
                    if app.output.json:
                        app.output.json_line(outcome.to_json(task.task_type))

                skipped, tally.outcomes = tally.outcomes, []
                for outcome in skipped:
                    report(outcome)
                runner = _Runner(app, client, task, options, display, report, journaled)
                from cl_client.plugins import run_parallel

                forget = app.on_interrupt(runner.interrupted)
                try:
                    async with run_parallel(
                        runner.process, todo, limit=options.concurrency
                    ) as done:
                        async for result in done:
                            result.unwrap()  # reported by the runner already
                finally:
                    forget()
        finished = True
    finally:
        # Also when Ctrl-C cancelled the batch: what finished is reported, and what runs on.
        if app.interrupted and runner is not None:
            _report_interrupted(app, task, runner, tally)
        if finished or app.interrupted:
            elapsed = anyio.current_time() - started
            if not app.output.json:
                print_summary(app, task, tally.outcomes, elapsed, no_wait=options.no_wait)
            else:
                totals_line(app, tally.outcomes, elapsed)
    return tally.code()


def _report_interrupted(app: App, task: PluginTask, runner: _Runner, tally: _Tally) -> None:
    running = [item for item in runner.in_flight.values() if item.job_id is not None]
    out = app.output
    if out.json:
        for item in running:
            out.json_line(ItemOutcome(item, "interrupted").to_json(task.task_type))
    if running:
        ids = " ".join(item.job_id or "" for item in running)
        out.error(
            f"interrupted: {len(running)} job(s) still on the server: {ids}\n"
            f"  follow them with: cl-client job watch {ids}"
        )
    else:
        out.error(f"interrupted after {len(tally.outcomes)} input(s); no job left running")


async def _check_workers(app: App, client: ComputeClient, task_type: str) -> None:
    """Warn (only) when no worker offers the task: the jobs would wait in the queue."""
    from cl_client import ClClientError

    try:
        capabilities = await client.get_capabilities()
    except ClClientError:
        return
    if task_type not in capabilities.capabilities:
        app.output.warn(
            f"no worker offers {task_type} right now: the jobs wait in the queue until one does"
        )
