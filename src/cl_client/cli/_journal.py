"""``--journal FILE``: a batch that survives being killed, and ``cl-client journal show``.

The journal is a SQLite file (the standard library's ``sqlite3``, WAL mode, one transaction per
change) with one row per input of a batch, keyed by what makes the work the same: the plugin,
its parameters, the input's name and output path, and the SHA-256 of the input's content. A row
goes ``submitting`` (written *before* the upload starts) -> ``submitted`` (the job id, written as
soon as the server answered) -> ``completed`` (the outputs, written once they are in place) or
``failed`` (the error). A rerun with the same journal therefore

* skips inputs whose row is ``completed``;
* re-attaches to ``submitted`` jobs by id (watches them, no new upload);
* reports ``failed`` ones again without resubmitting, unless ``--retry-failed``;
* submits everything else, including ``submitting`` rows: their upload was cut off before the
  server answered, so no job id was ever learnt (if the server had already created the job,
  that job is orphaned and the input is submitted a second time; the window is the time
  between the server creating the job and its answer arriving).

The journal's writes are synchronous and small (one row); they run on the event loop thread so
that nothing can come between recording an input and sending it.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, cast

import asyncclick as click

from ._command import AliasGroup, CliError, ExitCode, defer

if TYPE_CHECKING:
    from ._context import App

__all__ = ["Journal", "JournalRow", "content_hash", "fingerprint", "group"]

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS inputs (
    key TEXT PRIMARY KEY,
    input TEXT NOT NULL,
    task_type TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    params TEXT NOT NULL,
    state TEXT NOT NULL,
    job_id TEXT,
    outputs TEXT NOT NULL DEFAULT '[]',
    error TEXT,
    submissions INTEGER NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL
)
"""

STATES: Final = ("submitting", "submitted", "completed", "failed")


def content_hash(path: Path) -> str:
    """The SHA-256 of a file's content (hex)."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprint(task_type: str, params: dict[str, object], label: str, target: str | None) -> str:
    """The parameters that make two runs of one input the same work, as canonical JSON."""
    return json.dumps(
        {"task": task_type, "params": params, "input": label, "output": target},
        sort_keys=True,
        default=str,
    )


@dataclass(frozen=True)
class JournalRow:
    key: str
    input: str
    task_type: str
    state: str
    job_id: str | None
    outputs: list[str]
    error: str | None
    submissions: int


class Journal:
    """One journal file, open for the length of a batch (or of ``journal show``)."""

    def __init__(self, path: Path, *, create: bool = True) -> None:
        self.path = path
        if not create and not path.is_file():
            raise CliError(f"no journal at {path}", ExitCode.USAGE)
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            _ = self._db.execute("PRAGMA journal_mode=WAL")
            _ = self._db.execute("PRAGMA synchronous=NORMAL")  # durable across a killed process
            _ = self._db.execute(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise CliError(f"{path} is not a usable journal: {exc}", ExitCode.USAGE) from None

    def close(self) -> None:
        self._db.close()

    @staticmethod
    def key(fingerprint_json: str, digest: str) -> str:
        return hashlib.sha256(f"{fingerprint_json}\0{digest}".encode()).hexdigest()

    def get(self, key: str) -> JournalRow | None:
        row = cast(
            tuple[str, str, str, str, str | None, str, str | None, int] | None,
            self._db.execute(
                "SELECT key, input, task_type, state, job_id, outputs, error, submissions "
                "FROM inputs WHERE key = ?",
                (key,),
            ).fetchone(),
        )
        if row is None:
            return None
        return JournalRow(
            key=row[0],
            input=row[1],
            task_type=row[2],
            state=row[3],
            job_id=row[4],
            outputs=cast(list[str], json.loads(row[5])),
            error=row[6],
            submissions=row[7],
        )

    def rows(self) -> list[JournalRow]:
        keys = cast(
            list[tuple[str]], self._db.execute("SELECT key FROM inputs ORDER BY rowid").fetchall()
        )
        return [row for (key,) in keys if (row := self.get(key)) is not None]

    def submitting(self, key: str, *, label: str, task_type: str, digest: str, params: str) -> None:
        """Before the upload: the input is about to be sent (counted)."""
        with self._db:
            _ = self._db.execute(
                "INSERT INTO inputs (key, input, task_type, content_hash, params, state, "
                "submissions, updated_at) VALUES (?, ?, ?, ?, ?, 'submitting', 1, ?) "
                "ON CONFLICT(key) DO UPDATE SET state = 'submitting', job_id = NULL, "
                "error = NULL, submissions = submissions + 1, updated_at = excluded.updated_at",
                (key, label, task_type, digest, params, time.time()),
            )

    def submitted(self, key: str, job_id: str) -> None:
        self._set(key, "submitted", job_id=job_id)

    def completed(self, key: str, outputs: Iterable[Path]) -> None:
        self._set(key, "completed", outputs=json.dumps([str(p) for p in outputs]))

    def failed(self, key: str, error: str) -> None:
        self._set(key, "failed", error=error)

    def _set(self, key: str, state: str, **values: str) -> None:
        columns = "".join(f", {name} = ?" for name in values)
        with self._db:
            _ = self._db.execute(
                f"UPDATE inputs SET state = ?, updated_at = ?{columns} WHERE key = ?",
                (state, time.time(), *values.values(), key),
            )


# ------------------------------------------------------------------------- journal show

group = AliasGroup(
    "journal",
    help="Journals of resumable batches (--journal FILE).",
    context_settings={"help_option_names": ["-h", "--help"]},
)


@group.command("show")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
async def show(ctx: click.Context, file: Path) -> None:
    """Summarise a journal: how many inputs are in each state, and the failures."""

    async def work(app: App) -> ExitCode:
        journal = Journal(file, create=False)
        try:
            rows = journal.rows()
        finally:
            journal.close()
        counts: dict[str, int] = dict.fromkeys(STATES, 0)
        for row in rows:
            counts[row.state] = counts.get(row.state, 0) + 1
        failures = [row for row in rows if row.state == "failed"]
        running = [row for row in rows if row.state == "submitted"]
        out = app.output
        if out.json:
            out.json_line(
                {
                    "journal": str(file),
                    "inputs": len(rows),
                    "states": counts,
                    "submissions": sum(row.submissions for row in rows),
                    "failures": [{"input": r.input, "error": r.error} for r in failures],
                    "running": [{"input": r.input, "job_id": r.job_id} for r in running],
                }
            )
            return ExitCode.OK
        out.line(f"{file}: {len(rows)} input(s)")
        for state, count in counts.items():
            out.line(f"  {state:<11} {count}")
        for row in running:
            out.line(f"running: {row.input}  job {row.job_id}")
        for row in failures:
            out.line(f"failed: {row.input}: {row.error}")
        return ExitCode.OK

    defer(ctx, work, needs_server=False)
