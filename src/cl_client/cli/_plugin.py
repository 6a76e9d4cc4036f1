"""What every plugin command shares: the batch options, the command decorator, and the
:class:`PluginTask` each plugin module implements.

Cheap to import (asyncclick and the standard library only): the plugin modules import it to
declare their commands, and ``cl-client hash --help`` must not pay for the library. The batch
engine itself (:mod:`._batch`) is imported when a command runs.
"""

from __future__ import annotations

import functools
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, cast

import asyncclick as click

from ._command import AliasGroup, ExitCode, defer

if TYPE_CHECKING:
    from cl_client import ComputeClient, JobResponse, OnProgress

    from ._context import App

__all__ = [
    "BatchOptions",
    "ItemResult",
    "PluginTask",
    "batch_command",
    "plugin_group",
]


@dataclass(frozen=True)
class BatchOptions:
    """The options every plugin command takes (inputs, outputs, concurrency, waiting)."""

    inputs: tuple[Path, ...]
    output: Path | None = None
    output_is_dir: bool = False
    """``--output`` was written as a directory (a trailing ``/``)."""
    recursive: bool = False
    globs: tuple[str, ...] = ()
    concurrency: int = 8
    timeout: float | None = None
    no_wait: bool = False
    keep_jobs: bool = False
    overwrite: bool = False
    priority: int = 5
    journal: Path | None = None
    """``--journal FILE``: record every input's progress there and resume from it."""
    retry_failed: bool = False


@dataclass(frozen=True)
class ItemResult:
    """What one input gave: a one-line summary for people, fields for ``--json``, and the
    files saved (paths inside the staging directory until the engine publishes them)."""

    summary: str
    fields: dict[str, object] = field(default_factory=dict[str, object])
    outputs: list[Path] = field(default_factory=list[Path])


class PluginTask(ABC):
    """One plugin's part of a batch: how to submit an input, and what to fetch and save once
    its job completed. Instances hold the plugin's parameters, already checked by click."""

    task_type: ClassVar[str]
    output_suffix: ClassVar[str]
    """Appended to the input's stem to name its output (``photo`` -> ``photo.thumb.jpg``)."""
    output_is_dir: ClassVar[bool] = False
    """The output is a directory (an HLS bundle)."""
    saves_files_only: ClassVar[bool] = False
    """The result is a file (thumbnail, conversion, HLS): without ``--output`` nothing is kept."""

    def output_name(self, source: Path) -> str:
        """The file (or directory) name of the output of ``source``."""
        return source.stem + self.output_suffix

    @abstractmethod
    async def submit(
        self, client: ComputeClient, path: Path, priority: int, on_progress: OnProgress
    ) -> JobResponse:
        """Upload ``path`` with this task's parameters; return the submitted job."""

    @abstractmethod
    async def collect(
        self, client: ComputeClient, job: JobResponse, target: Path | None
    ) -> ItemResult:
        """The typed result of a completed job. With ``target`` (the output's path, in an
        empty staging directory), save every file the job produced there or beside it."""


# --------------------------------------------------------------------------------- commands


def plugin_group(name: str, help_text: str) -> AliasGroup:
    """The click group of one plugin (its verbs accept ``-`` or ``_``)."""
    return AliasGroup(
        name, help=help_text, context_settings={"help_option_names": ["-h", "--help"]}
    )


def _inputs_argument() -> click.Argument:
    return click.Argument(
        ["inputs"], nargs=-1, required=True, metavar="INPUT...", type=click.Path(path_type=Path)
    )


def _batch_params() -> list[click.Parameter]:
    """The options every plugin command shares, in the order help shows them."""
    return [
        click.Option(
            ["-o", "--output"],
            type=click.Path(),
            help="Where to save what the jobs produce: a file for one input, a directory for "
            "many (created if needed). Without it nothing is downloaded but the result itself.",
        ),
        click.Option(
            ["-r", "--recursive"], is_flag=True, help="Also take files in subdirectories."
        ),
        click.Option(
            ["--glob", "globs"],
            multiple=True,
            metavar="PATTERN",
            help="Only the files in the directories given whose name matches (e.g. '*.jpg'; "
            "repeatable).",
        ),
        click.Option(
            ["-j", "--concurrency"],
            type=click.IntRange(min=1),
            default=8,
            show_default=True,
            help="How many inputs are in flight at once.",
        ),
        click.Option(
            ["--timeout"],
            type=click.FloatRange(min=0, min_open=True),
            metavar="SECONDS",
            help="Give up on a job that has not finished this long after its submission.",
        ),
        click.Option(
            ["--priority"],
            type=click.IntRange(0, 10),
            default=5,
            show_default=True,
            help="Job priority, 0..10 (stored by the server).",
        ),
        click.Option(["--no-wait"], is_flag=True, help="Submit, print the job ids and stop."),
        click.Option(
            ["--keep-jobs"], is_flag=True, help="Leave the jobs on the server (default: deleted)."
        ),
        click.Option(["--overwrite"], is_flag=True, help="Replace outputs that already exist."),
        click.Option(
            ["--journal"],
            type=click.Path(dir_okay=False, path_type=Path),
            metavar="FILE",
            help="Record each input's job and outcome in this SQLite file; rerunning with it "
            "skips what is done, re-attaches to running jobs and submits only the rest.",
        ),
        click.Option(
            ["--retry-failed"],
            is_flag=True,
            help="With --journal: resubmit the inputs that failed in an earlier run.",
        ),
    ]


_BATCH_KEYS = (
    "inputs",
    "output",
    "recursive",
    "globs",
    "concurrency",
    "timeout",
    "priority",
    "no_wait",
    "keep_jobs",
    "overwrite",
    "journal",
    "retry_failed",
)


def _batch_options(ctx: click.Context, values: dict[str, object]) -> BatchOptions:
    output = cast(str | None, values["output"])
    no_wait = cast(bool, values["no_wait"])
    if cast(bool, values["retry_failed"]) and values["journal"] is None:
        raise click.UsageError("--retry-failed needs --journal", ctx=ctx)
    if no_wait and output is not None:
        raise click.UsageError("--no-wait saves nothing: drop --output (or --no-wait)", ctx=ctx)
    return BatchOptions(
        inputs=cast(tuple[Path, ...], values["inputs"]),
        output=Path(output) if output is not None else None,
        output_is_dir=output is not None and output.endswith(("/", os.sep)),
        recursive=cast(bool, values["recursive"]),
        globs=cast(tuple[str, ...], values["globs"]),
        concurrency=cast(int, values["concurrency"]),
        timeout=cast(float | None, values["timeout"]),
        priority=cast(int, values["priority"]),
        no_wait=no_wait,
        keep_jobs=cast(bool, values["keep_jobs"]) or no_wait,
        overwrite=cast(bool, values["overwrite"]),
        journal=cast(Path | None, values["journal"]),
        retry_failed=cast(bool, values["retry_failed"]),
    )


Factory = Callable[..., PluginTask]


def batch_command(group: click.Group, name: str) -> Callable[[Factory], click.Command]:
    """Turn a function returning the :class:`PluginTask` for the plugin's options into the
    batch command ``name`` of ``group`` (adding the inputs and the batch options).

    ::

        @batch_command(group, "compute")
        @click.option("--algorithm", ...)
        def compute(algorithm: str) -> PluginTask:
            \"\"\"Help text.\"\"\"
            return HashTask(algorithm)
    """

    def decorate(factory: Factory) -> click.Command:
        @functools.wraps(factory)
        async def callback(**values: object) -> None:
            ctx = click.get_current_context()
            batch = _batch_options(ctx, values)
            task = factory(**{k: v for k, v in values.items() if k not in _BATCH_KEYS})

            async def work(app: App) -> ExitCode:
                from ._batch import run_batch

                return await run_batch(app, task, batch)

            defer(ctx, work)

        # Help order: the inputs, the plugin's own options, then the shared ones. (click
        # builds a command's parameters from ``__click_params__`` reversed.)
        plugin_params = list(
            reversed(cast(list[click.Parameter], getattr(factory, "__click_params__", [])))
        )
        ordered = [_inputs_argument(), *plugin_params, *_batch_params()]
        setattr(callback, "__click_params__", list(reversed(ordered)))  # noqa: B010
        return group.command(name)(callback)

    return decorate
