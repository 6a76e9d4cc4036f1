"""How a batch looks: a live display on a terminal, plain lines elsewhere, a summary table.

* :class:`LiveDisplay` (stderr is a terminal): one overall bar (done, failed, total, rate,
  ETA) and a line per job in flight with its live state (uploading, queued, processing,
  saving), redrawn ten times a second by a task of its own; rich, no thread.
* :class:`LineDisplay` (stderr is a pipe or a file): one plain line per finished input.
* :func:`print_summary`: the final table on stdout (input, status, result, outputs, time).
* :class:`JobsDisplay` (``job watch``): a live table of jobs on a terminal, a final table on
  stdout; it shares the live redraw task with :class:`LiveDisplay` (``_redrawn``).
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Self

import anyio

from .._core.groups import HeldError

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.live import Live

    from cl_client import JobResponse, JobUpdate

    from ._batch import ItemOutcome
    from ._context import App
    from ._inputs import Item
    from ._plugin import PluginTask

__all__ = [
    "BatchDisplay",
    "JobsDisplay",
    "LineDisplay",
    "LiveDisplay",
    "make_display",
    "print_summary",
    "short",
    "totals_line",
]

# Display states in lifecycle order: a late MQTT "queued" never replaces "processing".
_RANK = {"uploading": 0, "queued": 1, "processing": 2, "saving": 3, "fetching": 3}
_TERMINAL = frozenset({"completed", "error", "failed"})
_STATUS_STYLE = {
    "completed": "green",
    "skipped": "dim",
    "submitted": "cyan",
    "failed": "bold red",
    "timeout": "bold red",
    "interrupted": "yellow",
}
_MAX_JOB_LINES = 12


def short(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters with an ellipsis."""
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


class BatchDisplay(anyio.AsyncContextManagerMixin):
    """Shows nothing (``--quiet``); the base of the other displays."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.failed = 0
        self.skipped = 0
        self.started = time.monotonic()

    @asynccontextmanager
    async def __asynccontextmanager__(self) -> AsyncGenerator[Self]:
        yield self

    def job_state(self, item: Item, state: str) -> None:
        """An input's job changed state (from MQTT, or a step of the CLI).

        States only move forward; terminal statuses are left to :meth:`finished` (the CLI
        still has to fetch and save the result), and an unknown status from a newer server
        counts as processing.
        """
        if state in _TERMINAL:
            return
        rank = _RANK.get(state, _RANK["processing"])
        if rank >= _RANK.get(item.state, -1):
            item.state = state

    def finished(self, outcome: ItemOutcome) -> None:
        """An input ended."""
        if outcome.status == "skipped":
            self.skipped += 1
        elif outcome.ok:
            self.done += 1
        else:
            self.failed += 1
        outcome.item.state = outcome.status

    @property
    def count(self) -> int:
        return self.done + self.failed + self.skipped


class LineDisplay(BatchDisplay):
    """One line per finished input on stderr (for logs and pipes)."""

    def __init__(self, app: App, total: int) -> None:
        super().__init__(total)
        self._out = app.output

    def finished(self, outcome: ItemOutcome) -> None:
        super().finished(outcome)
        detail = outcome.error if outcome.error is not None else _result_text(outcome)
        elapsed = f" ({outcome.elapsed:.2f} s)" if outcome.elapsed is not None else ""
        width = len(str(self.total))
        self._out.info(
            f"[{self.count:>{width}}/{self.total}] {outcome.status:<9} {outcome.item.label}"
            f"  {detail}{elapsed}".rstrip()
        )


@asynccontextmanager
async def _redrawn(live: Live) -> AsyncGenerator[None]:
    """Redraw a started rich ``Live`` ten times a second, by a task of its own, until the block
    ends (both live displays; the caller stops the ``Live``)."""

    async def redraw() -> None:
        while True:
            live.refresh()
            await anyio.sleep(0.1)

    held = HeldError()
    async with anyio.create_task_group() as tg:
        tg.start_soon(redraw)
        with held:
            try:
                yield
            finally:
                tg.cancel_scope.cancel()
    held.reraise()


class LiveDisplay(BatchDisplay):
    """The rich live display on stderr; redrawn by its own task while the batch runs."""

    def __init__(self, app: App, task: PluginTask, total: int, title: str) -> None:
        super().__init__(total)
        self._app = app
        self._task = task
        self._title = title
        self._items: dict[int, Item] = {}

    @asynccontextmanager
    async def __asynccontextmanager__(self) -> AsyncGenerator[Self]:
        from rich.live import Live

        console = self._app.output.err_console
        live = Live(
            self,
            console=console,
            auto_refresh=False,
            transient=False,
            redirect_stdout=self._app.output.stdout_is_tty,
            redirect_stderr=True,
        )
        live.start()
        try:
            async with _redrawn(live):
                yield self
        finally:
            self._items.clear()
            live.refresh()
            live.stop()

    def job_state(self, item: Item, state: str) -> None:
        super().job_state(item, state)
        self._items[item.index] = item

    def finished(self, outcome: ItemOutcome) -> None:
        super().finished(outcome)
        self._items.pop(outcome.item.index, None)
        if not outcome.ok:
            self._app.output.err_console.print(
                f"[bold red]{outcome.status}[/] {outcome.item.label}: {outcome.error}",
                highlight=False,
                markup=True,
            )

    def __rich__(self) -> RenderableType:
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.spinner import Spinner
        from rich.table import Table
        from rich.text import Text

        elapsed = max(time.monotonic() - self.started, 1e-6)
        finished = self.done + self.failed
        rate = finished / elapsed
        remaining = self.total - self.count
        eta = f"ETA {_clock(remaining / rate)}" if rate > 0 and remaining else ""
        header = Table.grid(padding=(0, 1))
        header.add_row(
            Text(self._title, style="bold"),
            ProgressBar(total=max(self.total, 1), completed=self.count, width=32),
            Text(f"{self.count}/{self.total}"),
            Text(f"✓ {self.done}", style="green"),
            Text(f"✗ {self.failed}", style="red" if self.failed else "dim"),
            Text(f"{rate:.1f}/s", style="cyan"),
            Text(eta or _clock(elapsed), style="dim"),
        )
        rows: list[RenderableType] = [header]
        in_flight = sorted(self._items.values(), key=lambda i: i.index)
        if in_flight:
            jobs = Table.grid(padding=(0, 2))
            now = anyio.current_time()
            for item in in_flight[:_MAX_JOB_LINES]:
                age = now - item.started if item.started is not None else 0.0
                jobs.add_row(
                    Spinner("dots", style="cyan"),
                    Text(short(item.label, 48)),
                    Text(item.state, style=_state_style(item.state)),
                    Text((item.job_id or "")[:8], style="dim"),
                    Text(f"{age:.1f}s", style="dim"),
                )
            if len(in_flight) > _MAX_JOB_LINES:
                jobs.add_row("", Text(f"… and {len(in_flight) - _MAX_JOB_LINES} more", "dim"))
            rows.append(jobs)
        return Group(*rows)


def _state_style(state: str) -> str:
    return {"processing": "yellow", "queued": "blue", "saving": "magenta"}.get(state, "dim")


def _clock(seconds: float) -> str:
    total = round(seconds)
    return f"{total // 3600}:{total // 60 % 60:02d}:{total % 60:02d}"


def make_display(app: App, task: PluginTask, *, total: int) -> BatchDisplay:
    """The live display on a terminal, plain lines elsewhere, nothing with ``--quiet``."""
    if app.output.quiet:
        return BatchDisplay(total)
    if app.output.live:
        return LiveDisplay(app, task, total, app.invocation.command or task.task_type)
    return LineDisplay(app, total)


def _result_text(outcome: ItemOutcome) -> str:
    return outcome.result.summary if outcome.result is not None else ""


def _outputs_text(outcome: ItemOutcome) -> str:
    outputs = outcome.outputs
    if not outputs:
        return ""
    more = f" (+{len(outputs) - 1} more)" if len(outputs) > 1 else ""
    return f"{outputs[0]}{more}"


def print_summary(
    app: App,
    task: PluginTask,
    outcomes: Sequence[ItemOutcome],
    elapsed: float,
    *,
    no_wait: bool,
) -> None:
    """The results: a table on stdout (job ids only, one per line, after ``--no-wait``)."""
    del task
    out = app.output
    ordered = sorted(outcomes, key=lambda o: o.item.index)
    if no_wait:
        for outcome in ordered:
            if outcome.item.job_id is not None:
                out.line(outcome.item.job_id)
        totals_line(app, ordered, elapsed)
        return
    if ordered:
        out.console.print(summary_table(ordered))
    totals_line(app, ordered, elapsed)


def summary_table(outcomes: Sequence[ItemOutcome]) -> RenderableType:
    """The summary table of a batch."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    with_outputs = any(outcome.outputs for outcome in outcomes)
    table.add_column("Input", overflow="fold")
    table.add_column("Status")
    table.add_column("Result", overflow="fold")
    if with_outputs:
        table.add_column("Outputs", overflow="fold")
    table.add_column("Time", justify="right")
    for outcome in outcomes:
        detail = outcome.error if outcome.error is not None else _result_text(outcome)
        cells: list[RenderableType] = [
            outcome.item.label,
            Text(outcome.status, style=_STATUS_STYLE.get(outcome.status, "")),
            Text(detail, style="red" if not outcome.ok else ""),
        ]
        if with_outputs:
            cells.append(_outputs_text(outcome))
        cells.append(f"{outcome.elapsed:.2f}s" if outcome.elapsed is not None else "-")
        table.add_row(*cells)
    return table


def totals_line(app: App, outcomes: Sequence[ItemOutcome], elapsed: float) -> None:
    """``12 input(s): 11 completed, 1 failed in 3.4 s`` on stderr."""
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    parts = ", ".join(f"{n} {status}" for status, n in counts.items()) or "nothing done"
    app.output.info(f"{len(outcomes)} input(s): {parts} in {elapsed:.1f} s")


class JobsDisplay(anyio.AsyncContextManagerMixin):
    """``job watch``: a live table of jobs on a terminal (stderr), a final table on stdout."""

    def __init__(self, app: App, job_ids: Sequence[str]) -> None:
        self._app = app
        self._states: dict[str, tuple[str, int, str]] = dict.fromkeys(job_ids, ("waiting", 0, ""))
        self._started = time.monotonic()

    def update(self, update: JobUpdate) -> None:
        task = update.job.task_type if update.job is not None else ""
        _, _, known = self._states.get(update.job_id, ("", 0, ""))
        self._states[update.job_id] = (update.status, update.progress, task or known)

    def missing(self, job_id: str) -> None:
        self._states[job_id] = ("not found", 0, "")

    @asynccontextmanager
    async def __asynccontextmanager__(self) -> AsyncGenerator[Self]:
        out = self._app.output
        if not out.live or out.json:
            yield self
            return
        from rich.live import Live

        live = Live(self, console=out.err_console, auto_refresh=False, transient=True)
        live.start()
        try:
            async with _redrawn(live):
                yield self
        finally:
            live.stop()

    def __rich__(self) -> RenderableType:
        from rich.table import Table
        from rich.text import Text

        table = Table.grid(padding=(0, 2))
        for job_id, (status, progress, task) in self._states.items():
            table.add_row(
                Text(job_id),
                Text(task or "", style="dim"),
                Text(status, style=_STATUS_STYLE.get(status, _state_style(status))),
                Text(f"{progress}%", style="dim"),
            )
        table.add_row(Text(_clock(time.monotonic() - self._started), style="dim"))
        return table

    def print_final(self, jobs: Sequence[JobResponse | None]) -> None:
        """The jobs as they ended (stdout)."""
        from rich import box
        from rich.table import Table
        from rich.text import Text

        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
        for column in ("Job", "Task", "Status", "Error"):
            table.add_column(column, overflow="fold")
        for job in jobs:
            if job is None:
                continue
            table.add_row(
                job.job_id,
                job.task_type,
                Text(job.status, style="red" if job.is_failed else "green"),
                job.error_message or "",
            )
        if table.row_count:
            self._app.output.console.print(table)
