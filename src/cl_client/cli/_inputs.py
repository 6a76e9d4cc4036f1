"""A batch's inputs: files and directories expanded into :class:`Item` s with their output paths,
every clash refused as a usage error before anything is sent."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ._command import CliError, ExitCode

if TYPE_CHECKING:
    from ._plugin import BatchOptions, PluginTask

__all__ = ["Item", "expand_inputs", "plan_items"]


@dataclass(eq=False)
class Item:
    """One input of the batch."""

    index: int
    path: Path
    """The file to upload."""
    label: str
    """How the input is shown (the path as given, or found under a directory given)."""
    target: Path | None = None
    """Where its output goes (None without ``--output``)."""
    job_id: str | None = None
    state: str = "pending"
    started: float | None = None
    key: str | None = None
    """Its journal row (``--journal``)."""
    attach: str | None = None
    """The job an earlier run submitted for it and is still running (``--journal``)."""
    digest: str = ""
    params: str = ""


def _walk(directory: Path, recursive: bool) -> Iterator[Path]:
    entries = sorted(directory.iterdir(), key=lambda p: p.name)
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            if recursive:
                yield from _walk(entry, recursive)
        elif entry.is_file():
            yield entry


def expand_inputs(
    inputs: Sequence[Path], *, recursive: bool, globs: Sequence[str]
) -> list[tuple[Path, str, Path]]:
    """Every input file as ``(path, label, relative output path)``, in order, once each.

    A directory gives its files (``recursive``: and those below), filtered by ``globs``
    (matched against file names); files named directly are always taken. A missing input or
    an empty result is a usage error (exit code 2), before anything is sent.
    """
    missing = [str(p) for p in inputs if not p.exists()]
    if missing:
        raise CliError(f"no such file or directory: {', '.join(missing)}", ExitCode.USAGE)
    found: list[tuple[Path, str, Path]] = []
    seen: set[Path] = set()
    for given in inputs:
        if given.is_dir():
            candidates = [
                (path, path.relative_to(given))
                for path in _walk(given, recursive)
                if not globs or any(fnmatch.fnmatch(path.name, g) for g in globs)
            ]
        elif given.is_file():
            candidates = [(given, Path(given.name))]
        else:
            raise CliError(f"not a regular file or directory: {given}", ExitCode.USAGE)
        for path, relative in candidates:
            key = path.resolve()
            if key not in seen:
                seen.add(key)
                found.append((path, str(path), relative))
    if not found:
        where = f" matching {' or '.join(repr(g) for g in globs)}" if globs else ""
        hint = "" if recursive else " (use -r for subdirectories)"
        raise CliError(f"no input files found{where}{hint}", ExitCode.USAGE)
    return found


def plan_items(task: PluginTask, options: BatchOptions) -> list[Item]:
    """The batch's items with their output paths, checked for clashes (usage errors)."""
    found = expand_inputs(options.inputs, recursive=options.recursive, globs=options.globs)
    items = [Item(i, path, label) for i, (path, label, _) in enumerate(found)]
    output = options.output
    if output is None:
        return items
    single_target = (
        len(found) == 1
        and not options.output_is_dir
        and not output.is_dir()
        and not task.output_is_dir
    )
    if single_target:
        items[0].target = output
    else:
        if output.exists() and not output.is_dir():
            raise CliError(
                f"--output {output} is a file, but {len(found)} inputs need a directory",
                ExitCode.USAGE,
            )
        if len(found) == 1 and task.output_is_dir and not output.is_dir():
            items[0].target = output  # the bundle's own directory
        else:
            for item, (_, _, relative) in zip(items, found, strict=True):
                item.target = output / relative.parent / task.output_name(relative)
    inputs = {item.path.resolve(): item for item in items}
    owners: dict[Path, Item] = {}
    for item in items:
        assert item.target is not None
        key = item.target.resolve()
        if key in inputs:
            raise CliError(
                f"the output of {item.label} would replace the input {inputs[key].label}: "
                "choose another --output",
                ExitCode.USAGE,
            )
        if key in owners:
            raise CliError(
                f"{owners[key].label} and {item.label} would both be saved as {item.target}: "
                "run them separately or into different --output directories",
                ExitCode.USAGE,
            )
        owners[key] = item
    return items
