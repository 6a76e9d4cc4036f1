"""Where a command's output goes: results on stdout (JSON lines with ``--json``), everything for
people on stderr, rich rendering only on a terminal."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import AsyncGenerator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

    from ._command import Invocation

__all__ = ["Output", "is_tty", "logging_to_stderr"]


def is_tty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or exotic stream
        return False


class Output:
    """Where everything a command prints goes.

    Results go to stdout: one JSON object per line with ``--json``, otherwise text or a table.
    Messages, progress and logs go to stderr (nothing at all with ``--quiet`` but errors).
    """

    def __init__(self, inv: Invocation, *, json_mode: bool, quiet: bool) -> None:
        self._inv = inv
        self.json = json_mode
        self.quiet = quiet
        self._stdout_console: Console | None = None
        self._stderr_console: Console | None = None

    @property
    def stdout(self) -> IO[str]:
        return self._inv.out

    @property
    def stderr(self) -> IO[str]:
        return self._inv.err

    @property
    def stdout_is_tty(self) -> bool:
        return is_tty(self.stdout)

    @property
    def stderr_is_tty(self) -> bool:
        return is_tty(self.stderr)

    @property
    def live(self) -> bool:
        """Whether live displays may be drawn (stderr is a terminal and not ``--quiet``)."""
        return self.stderr_is_tty and not self.quiet

    # -- rich consoles, created on first use ------------------------------------------------
    @property
    def console(self) -> Console:
        """A rich console on stdout (tables of results)."""
        if self._stdout_console is None:
            self._stdout_console = _console(self._inv.stdout, self.stdout, stderr=False)
        return self._stdout_console

    @property
    def err_console(self) -> Console:
        """A rich console on stderr (live displays, logs)."""
        if self._stderr_console is None:
            self._stderr_console = _console(self._inv.stderr, self.stderr, stderr=True)
        return self._stderr_console

    # -- writing ----------------------------------------------------------------------------
    def json_line(self, value: object) -> None:
        """One JSON object on one line of stdout, flushed at once (for ``| jq``)."""
        text = json.dumps(value, ensure_ascii=False, default=_json_default)
        self.stdout.write(text + "\n")
        self.stdout.flush()

    def line(self, text: str = "") -> None:
        """A plain line of results on stdout."""
        self.stdout.write(text + "\n")
        self.stdout.flush()

    def info(self, message: str) -> None:
        """A message for people, on stderr (not with ``--quiet``)."""
        if not self.quiet:
            self._err_line(message)

    def warn(self, message: str) -> None:
        """A warning on stderr (not with ``--quiet``)."""
        if not self.quiet:
            self._err_line(f"warning: {message}")

    def error(self, message: str) -> None:
        """An error on stderr (always)."""
        self._err_line(f"error: {message}")

    def _err_line(self, text: str) -> None:
        if self._stderr_console is not None and self._stderr_console.is_terminal:
            # Through rich, so a live display running on stderr is not torn apart.
            self._stderr_console.print(text, markup=False, highlight=False, soft_wrap=True)
            return
        self.stderr.write(text + "\n")
        self.stderr.flush()


def _json_default(value: object) -> object:
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _console(given: IO[str] | None, stream: IO[str], *, stderr: bool) -> Console:
    """A console on ``given``, or on sys.stdout/sys.stderr looked up at each write."""
    from rich.console import Console

    width = None
    if not is_tty(stream) and "COLUMNS" not in os.environ:
        width = 160  # a pipe or a file: wide enough that hashes and paths stay on one line
    if given is None:
        return Console(stderr=stderr, width=width, highlight=False)
    return Console(file=given, width=width, highlight=False)


class _StderrHandler(logging.Handler):
    """Log records on the command's stderr, looked up at each record (so rich's live display,
    which redirects ``sys.stderr``, keeps them above itself)."""

    def __init__(self, stream: Callable[[], IO[str]]) -> None:
        super().__init__()
        self._stream = stream
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = self._stream()
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:  # pragma: no cover - logging must never break the command
            self.handleError(record)


@asynccontextmanager
async def logging_to_stderr(inv: Invocation, verbose: int) -> AsyncGenerator[None]:
    """The library's log records on the command's stderr with ``-v`` (INFO) or ``-vv``
    (DEBUG); none at all otherwise."""
    library = logging.getLogger("cl_client")
    if verbose <= 0:
        # The library's warnings (a subscription ended when the client closed, ...) are not
        # for people running a command: the command reports what matters itself.
        quiet = logging.NullHandler()
        library.addHandler(quiet)
        try:
            yield
        finally:
            library.removeHandler(quiet)
        return
    use_sys = inv.stderr is None
    handler = _StderrHandler(lambda: sys.stderr if use_sys else inv.err)
    root = logging.getLogger("cl_client")
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose > 1 else logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
