"""Total decoders for everything the broker and the server send (sans-IO).

Every function here turns bytes into a value or raises :class:`ProtocolError`, and nothing else,
whatever the bytes are: size and nesting are bounded *before* parsing (a payload of 100,000 ``[``
never reaches the recursive parser), text must be UTF-8 without lone surrogates, integers have at
most 20 digits, floats are finite (``NaN``/``Infinity`` are refused), and identifiers are short
printable strings. Callers log the ProtocolError with :func:`excerpt` and count the drop.

Job events take a fast path: the exact shape the real server publishes (``json.dumps`` of four
keys in a fixed order) is matched by one regular expression and becomes the hub's JobUpdate
directly. Anything else goes through the validating path (JSON, then the pydantic model).
"""

from __future__ import annotations

import json
import math
import re
from typing import TypeVar, cast

from pydantic import BaseModel, ValidationError

from .errors import ProtocolError
from .models import JobEvent, JobResponse, JobUpdate, WorkerInfo

__all__ = [
    "MAX_EVENT_SIZE",
    "MAX_JSON_DEPTH",
    "MAX_STATUS_SIZE",
    "check_identifier",
    "decode_body",
    "decode_job_event",
    "decode_job_response",
    "decode_job_status",
    "decode_json",
    "decode_worker",
    "excerpt",
    "topic_tail",
]

M = TypeVar("M", bound=BaseModel)

MAX_EVENT_SIZE = 64 * 1024
"""Largest job event or capability message decoded (the real ones are ~150-400 bytes)."""
MAX_STATUS_SIZE = 1024 * 1024
"""Largest whole-JobResponse message (an older server's per-job status topic) decoded."""
MAX_JSON_DEPTH = 64
"""Deepest nesting of arrays and objects accepted (the real payloads nest 4 levels at most)."""
MAX_ID_LENGTH = 256
"""Longest job id, worker id or status accepted (job ids are 36-character UUIDs)."""
_MAX_INT_DIGITS = 20

_REAL_EVENT = re.compile(
    rb'\{"job_id": "([A-Za-z0-9._:-]{1,128})", "event_type": "([a-z_]{1,32})", '
    rb'"timestamp": (\d{1,18}), "progress": (\d{1,18})\}'
)
"""The job event exactly as the real server serialises it (docs/protocol.md#job-events). Its
progress is 0 to 100, but any progress the validating path accepts takes this path too (the
same update, faster): a producer that counts progress beyond 100 is not slowed down."""
_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


class _Refused(ValueError):
    """A number the decoder refuses (raised inside json and turned into ProtocolError)."""


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > _MAX_INT_DIGITS:
        raise _Refused(f"an integer of {len(text)} digits")
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"{text[:24]}, a number out of range")
    return value


def _parse_constant(text: str) -> object:
    raise _Refused(f"{text}, which is not a JSON number")


_DECODER = json.JSONDecoder(
    parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant
)


def excerpt(data: bytes | bytearray | memoryview, limit: int = 64) -> str:
    """A short, escaped excerpt of ``data`` for log lines (never the whole payload)."""
    head = bytes(data[:limit])
    more = f"... ({len(data)} bytes)" if len(data) > limit else ""
    return f"{head!r}{more}"


def _too_deep(text: str, max_depth: int) -> bool:
    if text.count("[") + text.count("{") <= max_depth:
        return False  # cannot nest deeper than it has brackets: no scan needed
    depth = 0
    for match in _TOKENS.finditer(text):
        char = text[match.start()]
        if char == "[" or char == "{":
            depth += 1
            if depth > max_depth:
                return True
        elif char == "]" or char == "}":
            depth -= 1
    return False


def _short(exc: ValidationError) -> str:
    parts = [
        f"{'.'.join(str(p) for p in error['loc']) or 'body'}: {error['msg']}"
        for error in exc.errors(include_url=False, include_input=False, include_context=False)
    ]
    text = "; ".join(parts)
    return text if len(text) <= 300 else f"{text[:300]}..."


def decode_json(
    data: bytes | bytearray | memoryview,
    what: str,
    *,
    max_size: int,
    max_depth: int = MAX_JSON_DEPTH,
) -> object:
    """Parse JSON text, bounded: at most ``max_size`` bytes, ``max_depth`` levels of nesting.

    Raises ProtocolError naming ``what`` for anything else: too large, too deep, not UTF-8,
    not JSON, lone surrogates, integers of more than 20 digits, NaN or infinite numbers.
    """
    size = len(data)
    if size > max_size:
        raise ProtocolError(f"{what} is {size} bytes, more than the {max_size} accepted")
    if not size:
        raise ProtocolError(f"{what} is empty")
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"{what} is not UTF-8 text (invalid byte at {exc.start})") from None
    if _too_deep(text, max_depth):
        raise ProtocolError(f"{what} nests deeper than {max_depth} levels")
    try:
        value = cast(object, _DECODER.decode(text))
    except _Refused as exc:
        raise ProtocolError(f"{what} holds {exc}") from None
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"{what} is not JSON: {str(exc)[:120]}") from None
    if _SURROGATE_ESCAPE.search(text) is not None:
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ProtocolError(f"{what} holds a lone UTF-16 surrogate") from None
    return value


def _json_object(data: bytes, what: str, max_size: int) -> dict[str, object]:
    value = decode_json(data, what, max_size=max_size)
    if not isinstance(value, dict):
        raise ProtocolError(f"{what} is not a JSON object")
    return cast(dict[str, object], value)


def check_identifier(value: str, what: str) -> str:
    """``value`` if it is a non-empty, printable string of at most 256 characters."""
    if not value or len(value) > MAX_ID_LENGTH or _UNPRINTABLE.search(value) is not None:
        raise ProtocolError(
            f"{what} must be 1 to {MAX_ID_LENGTH} printable characters, got {value[:40]!r}"
        )
    return value


def decode_body(
    model: type[M], data: bytes | bytearray | memoryview, what: str, *, max_size: int
) -> M:
    """An HTTP body (or JSON file) validated as ``model``; ProtocolError naming ``what``."""
    value = decode_json(data, what, max_size=max_size)
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise ProtocolError(f"unexpected {what}: {_short(exc)}") from None


def decode_job_response(
    data: bytes | bytearray | memoryview, what: str = "job", *, max_size: int = MAX_STATUS_SIZE
) -> JobResponse:
    """A ``GET /jobs/{id}`` body."""
    job = decode_body(JobResponse, data, what, max_size=max_size)
    check_identifier(job.job_id, f"{what} job_id")
    check_identifier(job.status, f"{what} status")
    return job


def decode_job_event(payload: bytes) -> JobUpdate:
    """A message on the job events topic: ``{"job_id","event_type","timestamp","progress"}``.

    An older plan nested progress as ``data.progress``; that form is accepted too.
    """
    match = _REAL_EVENT.fullmatch(payload)
    if match is not None:
        job_id, status, timestamp, progress = match.groups()
        return JobUpdate(job_id.decode(), status.decode(), int(progress), int(timestamp))
    data = _json_object(payload, "job event", MAX_EVENT_SIZE)
    nested = data.get("data")
    if "progress" not in data and isinstance(nested, dict):
        inner = cast(dict[str, object], nested)
        if "progress" in inner:
            data["progress"] = inner["progress"]
    try:
        event = JobEvent.model_validate(data)
    except ValidationError as exc:
        raise ProtocolError(f"invalid job event: {_short(exc)}") from None
    return JobUpdate(
        check_identifier(event.job_id, "job event job_id"),
        check_identifier(event.event_type, "job event event_type"),
        event.progress,
        event.timestamp,
    )


def decode_job_status(payload: bytes) -> JobUpdate:
    """A message on an older server's per-job status topic: a whole JobResponse."""
    job = decode_job_response(payload, "job status message")
    return JobUpdate.from_job(job, source="mqtt")


def topic_tail(topic: str, prefix: str) -> str | None:
    """The single topic level after ``prefix/``, or None if ``topic`` is not directly under it."""
    head = prefix.rstrip("/") + "/"
    if not topic.startswith(head):
        return None
    tail = topic[len(head) :]
    return tail if tail and "/" not in tail else None


def decode_worker(worker_id: str, payload: bytes) -> WorkerInfo | None:
    """A capability message. An empty payload means the worker is gone (returns None)."""
    if not payload:
        return None
    check_identifier(worker_id, "worker id in the topic")
    data = _json_object(payload, "capability message", MAX_EVENT_SIZE)
    data.setdefault("id", worker_id)
    try:
        info = WorkerInfo.model_validate(data)
    except ValidationError as exc:
        raise ProtocolError(f"invalid capability message: {_short(exc)}") from None
    check_identifier(info.worker_id, "capability message id")
    return info
