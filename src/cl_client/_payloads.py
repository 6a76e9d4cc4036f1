"""Decoding MQTT payloads into typed updates (sans-IO)."""

from __future__ import annotations

import json
from typing import cast

from pydantic import ValidationError

from ._errors import ProtocolError
from ._models import JobEvent, JobResponse, JobUpdate, WorkerInfo

__all__ = ["decode_job_event", "decode_job_status", "decode_worker", "topic_tail"]


def _json_object(payload: bytes, what: str) -> dict[str, object]:
    if not payload:
        raise ProtocolError(f"empty {what} payload")
    try:
        data = cast(object, json.loads(payload))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"{what} payload is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ProtocolError(f"{what} payload is not a JSON object: {payload[:80]!r}")
    return {str(k): v for k, v in cast(dict[object, object], data).items()}


def decode_job_event(payload: bytes) -> JobUpdate:
    """A message on the job events topic: ``{"job_id","event_type","timestamp","progress"}``.

    An older plan nested progress as ``data.progress``; that form is accepted too.
    """
    data = _json_object(payload, "job event")
    nested = data.get("data")
    if "progress" not in data and isinstance(nested, dict) and "progress" in nested:
        data["progress"] = nested["progress"]
    try:
        event = JobEvent.model_validate(data)
    except ValidationError as exc:
        raise ProtocolError(f"invalid job event: {exc.errors(include_url=False)}") from None
    return JobUpdate(
        job_id=event.job_id,
        status=event.event_type,
        progress=event.progress,
        timestamp=event.timestamp,
        source="mqtt",
    )


def decode_job_status(payload: bytes) -> JobUpdate:
    """A message on an older server's per-job status topic: a whole JobResponse."""
    data = _json_object(payload, "job status")
    try:
        job = JobResponse.model_validate(data)
    except ValidationError as exc:
        raise ProtocolError(f"invalid job status: {exc.errors(include_url=False)}") from None
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
    data = _json_object(payload, "worker capability")
    data.setdefault("id", worker_id)
    try:
        return WorkerInfo.model_validate(data)
    except ValidationError as exc:
        raise ProtocolError(
            f"invalid capability message: {exc.errors(include_url=False)}"
        ) from None
