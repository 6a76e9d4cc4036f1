"""``cl-client workers list|watch|wait``: the compute workers, from their MQTT capability
messages."""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

import asyncclick as click

from ._command import AliasGroup, ExitCode, defer

if TYPE_CHECKING:
    from rich.console import RenderableType

    from cl_client import ComputeClient, WorkerEvent, WorkerInfo

    from ._context import App

__all__ = ["group"]

group = AliasGroup("workers", help="List, watch and wait for workers.")

_SETTLE = 2.0
"""How long ``workers list`` waits for the retained capability messages to arrive."""


def _ago(timestamp_ms: int | None) -> str:
    if timestamp_ms is None:
        return "-"
    seconds = max(0.0, time.time() - timestamp_ms / 1000)
    if seconds < 90:
        return f"{seconds:.0f}s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.1f}h ago"


def _worker_json(worker_id: str, info: WorkerInfo | None) -> dict[str, object]:
    if info is None:
        return {"worker_id": worker_id, "gone": True}
    return {
        "worker_id": worker_id,
        "capabilities": list(info.capabilities),
        "idle_count": info.idle_count,
        "timestamp": info.timestamp,
    }


def workers_table(workers: Mapping[str, WorkerInfo]) -> RenderableType:
    """Id, capabilities, idle count and last message of each worker."""
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("Worker", overflow="fold")
    table.add_column("Capabilities", overflow="fold")
    table.add_column("Idle", justify="right")
    table.add_column("Last seen", justify="right")
    for worker_id, info in sorted(workers.items()):
        table.add_row(
            worker_id,
            ", ".join(sorted(info.capabilities)),
            str(info.idle_count),
            _ago(info.timestamp),
        )
    return table


def _print_workers(app: App, workers: Mapping[str, WorkerInfo]) -> None:
    out = app.output
    if out.json:
        for worker_id, info in sorted(workers.items()):
            out.json_line(_worker_json(worker_id, info))
    elif workers:
        out.console.print(workers_table(workers))
    else:
        out.info("no workers")


async def _settled_workers(client: ComputeClient) -> dict[str, WorkerInfo]:
    """The workers, once the retained capability messages had time to arrive: as many as
    ``GET /capabilities`` counts, or whatever came within a couple of seconds."""
    import anyio

    wanted = max((await client.get_capabilities()).num_workers, 1)
    with anyio.move_on_after(_SETTLE):
        async with client.watch_workers() as changes:
            if len(client.workers) < wanted:
                async for _ in changes:
                    if len(client.workers) >= wanted:
                        break
    return client.workers


# ---------------------------------------------------------------------------------- list


@group.command("list")
@click.pass_context
async def list_(ctx: click.Context) -> None:
    """The live workers: id, capabilities, idle count, last capability message.

    With --no-mqtt only GET /capabilities is asked: idle workers per capability, no ids.
    """
    defer(ctx, _list)


async def _list(app: App) -> ExitCode:
    async with app.open_client() as client:
        if not client.settings.mqtt_enabled:
            capabilities = await client.get_capabilities()
            out = app.output
            if out.json:
                out.json_line(capabilities.model_dump(mode="json"))
                return ExitCode.OK
            out.info(f"{capabilities.num_workers} worker(s); ids need MQTT (drop --no-mqtt)")
            for name, idle in sorted(capabilities.capabilities.items()):
                out.line(f"{name}\t{idle} idle")
            return ExitCode.OK
        workers = await _settled_workers(client)
    _print_workers(app, workers)
    return ExitCode.OK


list_.name = "list"


# --------------------------------------------------------------------------------- watch


@group.command("watch")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Stop after this long (default: until Ctrl-C).",
)
@click.pass_context
async def watch(ctx: click.Context, timeout: float | None) -> None:
    """Follow workers as they come, go and get busy, until Ctrl-C.

    On a terminal: a live table. Otherwise one line per change on stdout (--json: one JSON
    object per change; a worker that left has "gone": true).
    """
    defer(ctx, functools.partial(_watch, timeout), ends_on_interrupt=True)


async def _watch(timeout: float | None, app: App) -> ExitCode:
    import math

    import anyio

    out = app.output
    current: dict[str, WorkerInfo] = {}
    async with app.open_client() as client:
        if not client.settings.mqtt_enabled:
            from ._command import CliError

            raise CliError("workers watch needs MQTT: drop --no-mqtt", ExitCode.USAGE)
        live = None
        if out.live and not out.json:
            from rich.live import Live

            live = Live(
                workers_table(current),
                console=out.err_console,
                auto_refresh=False,
                transient=True,  # the final table goes to stdout
            )
            live.start()
        try:
            with anyio.move_on_after(math.inf if timeout is None else timeout):
                async with client.watch_workers() as events:
                    async for event in events:
                        _apply(current, event)
                        if live is not None:
                            live.update(workers_table(current), refresh=True)
                        else:
                            _event_line(app, event)
        finally:
            if live is not None:
                live.stop()
                out.console.print(workers_table(current))
    return ExitCode.OK


def _apply(current: dict[str, WorkerInfo], event: WorkerEvent) -> None:
    if event.info is None:
        current.pop(event.worker_id, None)
    else:
        current[event.worker_id] = event.info


def _event_line(app: App, event: WorkerEvent) -> None:
    out = app.output
    if out.json:
        out.json_line(_worker_json(event.worker_id, event.info))
        return
    when = time.strftime("%H:%M:%S")
    if event.info is None:
        out.line(f"{when}  {event.worker_id}  gone")
    else:
        caps = ",".join(sorted(event.info.capabilities))
        out.line(f"{when}  {event.worker_id}  idle {event.info.idle_count}  {caps}")


# ---------------------------------------------------------------------------------- wait


@group.command("wait")
@click.argument("tasks", nargs=-1, required=True, metavar="TASK...")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="Give up after this long (exit code 1).",
)
@click.pass_context
async def wait(ctx: click.Context, tasks: tuple[str, ...], timeout: float) -> None:
    """Wait until live workers offer every TASK (e.g. hash clip_embedding), then list them.

    Exit code 1 at --timeout, naming what is missing and what is available.
    """
    defer(ctx, functools.partial(_wait, tasks, timeout))


async def _wait(tasks: tuple[str, ...], timeout: float, app: App) -> ExitCode:
    from cl_client import WorkerUnavailableError

    from ._command import CliError

    async with app.open_client() as client:
        try:
            workers = await client.wait_for_workers(tasks, timeout=timeout)
        except WorkerUnavailableError as exc:
            raise CliError(f"after {timeout:g} s: {exc}", ExitCode.FAILED) from None
    offering = {wid: info for wid, info in workers.items() if set(tasks) & set(info.capabilities)}
    if offering or app.output.json:
        _print_workers(app, offering)
    else:
        app.output.info(f"workers offer {', '.join(tasks)} (worker ids need MQTT)")
    return ExitCode.OK
