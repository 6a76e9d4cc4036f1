"""The submission contract, defined once: the options every submission and every ``run()`` take.

``client.submit(...)`` and the nine plugins' submission methods (``embed_image``, ``extract``,
``convert``, ...) take :class:`SubmitOptions` as keywords; the plugins' ``run(...)`` takes
:class:`RunOptions`. Both are typed (``**options: Unpack[SubmitOptions]``), so a type checker
flags a misspelt option; at run time an unknown option or a bad value is a ParameterError raised
before anything is uploaded.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypedDict, cast

from ._callbacks import OnComplete, OnProgress
from ._core.checks import check_bool, check_callable, check_int, check_timeout
from ._core.errors import ParameterError

__all__ = ["CheckedOptions", "RunOptions", "SubmitOptions", "job_options"]


class _CommonOptions(TypedDict, total=False):
    priority: int
    """0..10, default 5 (stored by the server; the real server does not schedule by it)."""
    timeout: float | None
    """Seconds to wait for the job to finish before JobTimeoutError (default None: no limit).
    Only meaningful when the call waits (``wait=True``, or ``run()``)."""
    on_progress: OnProgress | None
    """Called with every JobUpdate of the job, the terminal one included (sync or async);
    registered with the submission, so no update is missed."""


class SubmitOptions(_CommonOptions, total=False):
    """Keyword options of every submission: ``client.submit()`` and the plugins' verbs.

    * ``priority``: 0..10, default 5.
    * ``wait``: False (default) returns the job as submitted, right after the ``POST``, without
      another request: a JobResponse with ``job_id``, ``task_type``, ``status`` (``queued``)
      and ``priority`` (call ``client.get_job()`` for the stored record). True waits until the
      job ends, exactly like ``client.wait(job_id)`` (MQTT, with HTTP as the safety net), and
      returns the final JobResponse, raising JobFailedError if it failed.
    * ``timeout``: with ``wait``, JobTimeoutError after this many seconds (default no limit);
      without ``wait`` it is refused (ParameterError): use ``client.wait`` under
      ``anyio.fail_after`` instead.
    * ``on_progress(update)``: every JobUpdate, the terminal one included.
    * ``on_complete(job)``: once, with the final JobResponse (completed or failed).

    Callbacks may be sync or async; they are registered before the submission returns, so no
    update is missed, and run in the client's task group until the job ends.
    """

    wait: bool
    """Wait for the job to end and return the final JobResponse (JobFailedError if it failed)."""
    on_complete: OnComplete | None
    """Called once with the final JobResponse, completed or failed (sync or async)."""


class RunOptions(_CommonOptions, total=False):
    """Keyword options of the plugins' one-call ``run()``: submit, wait, return the result.

    * ``priority``: 0..10, default 5.
    * ``timeout``: JobTimeoutError after this many seconds (default no limit).
    * ``on_progress(update)``: every JobUpdate while the job runs.
    * ``delete_job``: delete the job on the server once its result is fetched (default False).
    """

    delete_job: bool
    """Delete the job on the server once its result is fetched (or the call failed)."""


@dataclass(frozen=True, slots=True)
class CheckedOptions:
    """The options of one call, checked and with their defaults (see :func:`job_options`)."""

    priority: int = 5
    wait: bool = False
    timeout: float | None = None
    on_progress: OnProgress | None = None
    on_complete: OnComplete | None = None
    delete_job: bool = False


_SUBMIT_KEYS = frozenset(SubmitOptions.__annotations__) | frozenset(_CommonOptions.__annotations__)
_RUN_KEYS = frozenset(RunOptions.__annotations__) | frozenset(_CommonOptions.__annotations__)


def job_options(options: Mapping[str, object], *, run: bool = False) -> CheckedOptions:
    """Check ``options`` (SubmitOptions, or RunOptions with ``run``) and return them with their
    defaults filled in. Unknown names and bad values raise ParameterError."""
    allowed = _RUN_KEYS if run else _SUBMIT_KEYS
    for name in options:
        if name not in allowed:
            close = difflib.get_close_matches(name, allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ParameterError(
                f"unknown option {name!r}{hint} (options: {', '.join(sorted(allowed))})"
            )
    priority = check_int("priority", options.get("priority", 5), minimum=0, maximum=10)
    wait = True if run else check_bool("wait", options.get("wait", False))
    timeout = check_timeout(options.get("timeout"))
    if timeout is not None and not wait:
        raise ParameterError(
            "timeout applies only with wait=True (without it the call returns at once)"
        )
    on_progress = options.get("on_progress")
    on_complete = options.get("on_complete")
    check_callable("on_progress", on_progress)
    check_callable("on_complete", on_complete)
    delete_job = check_bool("delete_job", options.get("delete_job", False))
    return CheckedOptions(
        priority=priority,
        wait=wait,
        timeout=timeout,
        on_progress=cast("OnProgress | None", on_progress),
        on_complete=cast("OnComplete | None", on_complete),
        delete_job=delete_job,
    )
