"""``cl-client job get|watch|wait|delete|download``: jobs by id."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, cast

import asyncclick as click

from ._command import AliasGroup, CliError, ExitCode, defer

if TYPE_CHECKING:
    from cl_client import ComputeClient, JobResponse, JobUpdate

    from ._context import App

__all__ = ["group"]

group = AliasGroup("job", help="Follow, fetch, download and delete jobs by id.")

_IDS = click.argument("job_ids", nargs=-1, required=True, metavar="JOB_ID...")


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000).isoformat(sep=" ", timespec="seconds")


def _job_json(job: JobResponse) -> dict[str, object]:
    return cast(dict[str, object], job.model_dump(mode="json"))


def _describe(app: App, jobs: Sequence[JobResponse]) -> None:
    """People: one block per job; scripts (--json): one JobResponse per line."""
    out = app.output
    if out.json:
        for job in jobs:
            out.json_line(_job_json(job))
        return
    from rich.table import Table

    for job in jobs:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column(overflow="fold")
        table.add_row("job", job.job_id)
        table.add_row("task", job.task_type or "-")
        table.add_row("status", f"{job.status} ({job.progress}%)")
        table.add_row("created", _when(job.created_at))
        if job.started_at is not None:
            table.add_row("started", _when(job.started_at))
        if job.completed_at is not None:
            table.add_row("completed", _when(job.completed_at))
        if job.output_path:
            table.add_row("output", job.output_path)
        if job.task_output:
            import json

            table.add_row("result", json.dumps(job.task_output, ensure_ascii=False))
        if job.error_message:
            table.add_row("error", job.error_message)
        out.console.print(table)
        out.console.print()


async def _fetch_all(app: App, client: ComputeClient, job_ids: Sequence[str]) -> list[JobResponse]:
    """The jobs that exist (an error line for each one that does not)."""
    from cl_client import NotFoundError

    jobs: list[JobResponse] = []
    for job_id in dict.fromkeys(job_ids):
        try:
            jobs.append(await client.get_job(job_id))
        except NotFoundError:
            app.output.error(f"job {job_id} not found")
    return jobs


# ----------------------------------------------------------------------------------- get


@group.command("get")
@_IDS
@click.pass_context
async def get(ctx: click.Context, job_ids: tuple[str, ...]) -> None:
    """Show jobs: status, progress, times, result and error (--json: the server's JSON)."""
    defer(ctx, functools.partial(_get, job_ids))


async def _get(job_ids: tuple[str, ...], app: App) -> ExitCode:
    async with app.open_client(mqtt=False) as client:
        jobs = await _fetch_all(app, client, job_ids)
    _describe(app, jobs)
    return ExitCode.OK if len(jobs) == len(set(job_ids)) else ExitCode.FAILED


# --------------------------------------------------------------------------------- watch


@group.command("watch")
@_IDS
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Stop watching after this long (exit code 1 if a job is still running).",
)
@click.pass_context
async def watch(ctx: click.Context, job_ids: tuple[str, ...], timeout: float | None) -> None:
    """Show the live state of jobs until each one ends.

    On a terminal: a live table. Otherwise one line per change on stdout (--json: one JSON
    object per change). Exit code 0 when every job completed, 1 if one failed or is unknown.
    """
    defer(ctx, functools.partial(_watch, tuple(dict.fromkeys(job_ids)), timeout))


async def _watch(job_ids: tuple[str, ...], timeout: float | None, app: App) -> ExitCode:
    import math

    import anyio

    from cl_client import NotFoundError

    from ._display import JobsDisplay

    finals: dict[str, JobResponse | None] = {}
    async with app.open_client() as client:
        display = JobsDisplay(app, job_ids)

        async def follow(job_id: str) -> None:
            try:
                async with client.watch(job_id) as updates:
                    async for update in updates:
                        display.update(update)
                        _update_line(app, update)
                        if update.is_terminal:
                            finals[job_id] = update.job or await client.get_job(job_id)
            except NotFoundError:
                finals[job_id] = None
                display.missing(job_id)
                app.output.error(f"job {job_id} not found")

        async with display:
            with anyio.move_on_after(math.inf if timeout is None else timeout):
                async with anyio.create_task_group() as tg:
                    for job_id in job_ids:
                        tg.start_soon(follow, job_id)
    ended = [finals[j] for j in job_ids if j in finals]
    if not app.output.json:
        display.print_final(ended)
    pending = [j for j in job_ids if j not in finals]
    if pending:
        app.output.error(f"still running after {timeout:g} s: {' '.join(pending)}")
        return ExitCode.FAILED
    failed = [j for j in ended if j is None or j.is_failed]
    return ExitCode.FAILED if failed else ExitCode.OK


def _update_line(app: App, update: JobUpdate) -> None:
    out = app.output
    if out.json:
        out.json_line(
            {
                "job_id": update.job_id,
                "status": update.status,
                "progress": update.progress,
                "timestamp": update.timestamp,
                "source": update.source,
                "error": update.error_message,
            }
        )
    elif not out.live:
        when = datetime.now().strftime("%H:%M:%S")
        error = f"  {update.error_message}" if update.error_message else ""
        out.line(f"{when}  {update.job_id}  {update.status:<10} {update.progress:>3}%{error}")


# ---------------------------------------------------------------------------------- wait


@group.command("wait")
@_IDS
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Give up after this long (exit code 1).",
)
@click.pass_context
async def wait(ctx: click.Context, job_ids: tuple[str, ...], timeout: float | None) -> None:
    """Wait until jobs end, then show them. Exit code 1 if one failed, is unknown or is still
    running at --timeout."""
    defer(ctx, functools.partial(_wait, tuple(dict.fromkeys(job_ids)), timeout))


async def _wait(job_ids: tuple[str, ...], timeout: float | None, app: App) -> ExitCode:
    import math

    import anyio

    from cl_client import NotFoundError

    finals: dict[str, JobResponse] = {}
    code = ExitCode.OK
    async with app.open_client() as client:

        async def one(job_id: str) -> None:
            nonlocal code
            try:
                finals[job_id] = await client.wait(job_id, raise_on_error=False)
            except NotFoundError:
                app.output.error(f"job {job_id} not found")
                code = ExitCode.FAILED

        with anyio.move_on_after(math.inf if timeout is None else timeout):
            async with anyio.create_task_group() as tg:
                for job_id in job_ids:
                    tg.start_soon(one, job_id)
    jobs = [finals[j] for j in job_ids if j in finals]
    _describe(app, jobs)
    running = [j for j in job_ids if j not in finals and code == ExitCode.OK]
    if running:
        app.output.error(f"still running after {timeout:g} s: {' '.join(running)}")
        code = ExitCode.FAILED
    if any(job.is_failed for job in jobs):
        code = ExitCode.FAILED
    return code


# -------------------------------------------------------------------------------- delete


@group.command("delete")
@_IDS
@click.pass_context
async def delete(ctx: click.Context, job_ids: tuple[str, ...]) -> None:
    """Delete jobs and their files from the server."""
    defer(ctx, functools.partial(_delete, tuple(dict.fromkeys(job_ids))))


async def _delete(job_ids: tuple[str, ...], app: App) -> ExitCode:
    from cl_client import NotFoundError

    code = ExitCode.OK
    out = app.output
    async with app.open_client(mqtt=False) as client:
        for job_id in job_ids:
            try:
                await client.delete_job(job_id)
            except NotFoundError:
                out.error(f"job {job_id} not found")
                code = ExitCode.FAILED
                continue
            if out.json:
                out.json_line({"job_id": job_id, "deleted": True})
            else:
                out.line(f"deleted {job_id}")
    return code


# ------------------------------------------------------------------------------ download


@group.command("download")
@click.argument("job_id")
@click.argument("paths", nargs=-1, metavar="[PATH] [DEST]")
@click.option(
    "--all",
    "everything",
    is_flag=True,
    help="Every output of the job (playlists and segments, face crops, ...) into DEST.",
)
@click.option("--overwrite", is_flag=True, help="Replace files that already exist.")
@click.pass_context
async def download(
    ctx: click.Context, job_id: str, paths: tuple[str, ...], everything: bool, overwrite: bool
) -> None:
    """Download a job's files.

    \b
    cl-client job download JOB_ID PATH [DEST]   one file (PATH as on the server, e.g.
                                               output/thumbnail.jpg) to DEST (a file or a
                                               directory; default: here, same name)
    cl-client job download JOB_ID --all [DEST]  every output of a completed job into the
                                               directory DEST (default: here)
    """
    if everything:
        if len(paths) > 1:
            raise click.UsageError("with --all, give only the destination directory", ctx=ctx)
        dest = Path(paths[0]) if paths else Path()
        defer(ctx, functools.partial(_download_all, job_id, dest, overwrite))
        return
    given = list(paths)
    if not given:
        raise click.UsageError("give the PATH of a job file, or --all", ctx=ctx)
    if len(given) > 2:
        raise click.UsageError("too many arguments: PATH [DEST]", ctx=ctx)
    dest = given[1] if len(given) == 2 else "."
    defer(ctx, functools.partial(_download_one, job_id, given[0], dest, overwrite))


def _saved(app: App, job_id: str, files: Sequence[Path]) -> None:
    out = app.output
    if out.json:
        out.json_line({"job_id": job_id, "outputs": [str(p) for p in files]})
    else:
        for path in files:
            out.line(str(path))


async def _download_one(job_id: str, path: str, dest: str, overwrite: bool, app: App) -> ExitCode:
    from cl_client import DownloadError

    async with app.open_client(mqtt=False) as client:
        try:
            saved = await client.download_job_file(job_id, path, dest, overwrite=overwrite)
        except DownloadError as exc:
            raise CliError(f"{exc}", ExitCode.FAILED) from None
    _saved(app, job_id, [saved])
    return ExitCode.OK


async def _download_all(job_id: str, dest: Path, overwrite: bool, app: App) -> ExitCode:
    from ._batch import staged

    async with app.open_client(mqtt=False) as client:
        job = await client.get_job(job_id)
        if job.is_failed:
            raise CliError(f"job {job_id} failed: {job.error_message or 'no error message'}")
        if not job.is_terminal:
            raise CliError(
                f"job {job_id} is still {job.status}: wait for it first "
                f"(cl-client job wait {job_id})"
            )
        async with staged(dest, overwrite=overwrite) as staging:
            files = await _outputs(client, job, staging)
    _saved(app, job_id, [dest / path.relative_to(staging) for path in files])
    return ExitCode.OK


async def _outputs(client: ComputeClient, job: JobResponse, directory: Path) -> list[Path]:
    """Every file a completed job produced, saved into ``directory`` with the server's names."""
    if job.task_type == "hls_streaming":
        return (await client.hls_streaming.result(job, directory)).files
    if job.output_path is None:
        raise CliError(f"job {job.job_id} ({job.task_type or 'unknown task'}) has no output file")
    files = [await client.download_job_file(job.job_id, job.output_path, directory)]
    if job.task_type == "face_detection":
        files += await client.face_detection.download_crops(job, directory)
    return files
