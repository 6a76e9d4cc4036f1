"""Property tests: every decoder gives a value or ProtocolError, never anything else.

Inputs are arbitrary bytes, mutations of the real payloads, JSON of any shape with the right
keys, and the pathological cases (deep nesting, huge numbers, bad UTF-8, lone surrogates).
Each decoded value is also used the way the client uses it (lifecycle rules, pixel boxes, tag
lookups, vector conversion), which must not fail either.
"""

from __future__ import annotations

import contextlib
import json
import math
import struct
from collections.abc import Callable
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cl_client._core import lifecycle
from cl_client._core.errors import DownloadError, ProtocolError
from cl_client._core.payloads import (
    decode_job_event,
    decode_job_response,
    decode_job_status,
    decode_json,
    decode_worker,
)
from cl_client.plugins._hls_streaming import _resolve
from cl_client.plugins._npy import parse_npy
from cl_client.plugins._results import (
    ExifMetadata,
    FaceDetectionOutput,
    HashOutput,
    decode_playlist,
    parse_json_payload,
    parse_payload,
)

T = TypeVar("T")
D = TypeVar("D")

PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

REAL_EVENT = (
    b'{"job_id": "4080ea61-1d7b-4508-8ddf-23a6f21b6366", "event_type": "processing", '
    b'"timestamp": 1795251260038, "progress": 0}'
)
REAL_WORKER = (
    b'{"id": "worker-1", "capabilities": ["image_conversion", "hash", "exif"], '
    b'"idle_count": 1, "timestamp": 1795251015224}'
)
REAL_JOB = json.dumps(
    {
        "job_id": "8f17a75d-1d7b-4508-8ddf-23a6f21b6366",
        "task_type": "media_thumbnail",
        "status": "completed",
        "progress": 100,
        "params": {"input_path": "input/a.jpg", "output_path": "output/thumbnail.jpg"},
        "task_output": {"media_type": "image"},
        "error_message": None,
        "priority": 5,
        "created_at": 1795251260038,
        "updated_at": 1795251260038,
        "started_at": 1795251260100,
        "completed_at": 1795251260500,
    }
).encode()
PATHOLOGICAL = [
    b"[" * 100_000,
    b"{" * 100_000,
    b'{"a": ' * 10_000,
    b'{"job_id": "a", "event_type": "queued", "progress": ' + b"9" * 5000 + b"}",
    b'{"job_id": "a", "status": "queued", "progress": 1e999}',
    b'{"job_id": "a", "event_type": "queued", "progress": NaN}',
    b'{"job_id": "a", "event_type": "queued", "progress": -Infinity}',
    b'{"job_id": "\\ud800", "event_type": "queued", "status": "queued"}',
    b'{"job_id": "\\u0000", "event_type": "queued", "status": "queued", "id": "\\u0000"}',
    b"\xff\xfe\x00\x00",
    b"\xef\xbb\xbf{}",
    b"",
    b"null",
    b'"just a string"',
    b" " * 70_000,
]

json_scalars: st.SearchStrategy[object] = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values: st.SearchStrategy[object] = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=25,
)


def shaped(keys: list[str]) -> st.SearchStrategy[bytes]:
    """JSON objects with (some of) the right keys and values of any type."""
    return st.fixed_dictionaries(
        {}, optional=dict.fromkeys(keys, json_values) | {"extra": json_values}
    ).map(lambda value: json.dumps(value).encode())


def mutated(real: bytes) -> st.SearchStrategy[bytes]:
    """The real payload with a slice replaced by arbitrary bytes."""
    return st.tuples(st.integers(0, len(real)), st.integers(0, 8), st.binary(max_size=12)).map(
        lambda t: real[: t[0]] + t[2] + real[t[0] + t[1] :]
    )


def total(decode: Callable[[D], T], data: D) -> T | None:
    """``decode(data)``, or None for a ProtocolError; anything else fails the test."""
    try:
        return decode(data)
    except ProtocolError as exc:
        assert str(exc)  # a message that says what was wrong
        return None


def worker_1(payload: bytes) -> object:
    return decode_worker("worker-1", payload)


def bounded_json(data: bytes) -> object:
    return decode_json(data, "body", max_size=64 * 1024)


def playlist(data: bytes) -> list[str]:
    return decode_playlist(data, "playlist")


def hash_json(data: bytes) -> HashOutput:
    return parse_json_payload(HashOutput, data, "hash.json")


def exif(value: object) -> ExifMetadata:
    return parse_payload(ExifMetadata, value, "exif output")


def faces(value: object) -> FaceDetectionOutput:
    return parse_payload(FaceDetectionOutput, value, "faces")


def header_of(order: str, size: int, shape: tuple[int, ...]) -> str:
    return f"{{'descr': '{order}f{size}', 'fortran_order': False, 'shape': {shape!r}, }}"


def any_input(real: bytes, keys: list[str]) -> st.SearchStrategy[bytes]:
    return (
        st.binary(max_size=300)
        | mutated(real)
        | shaped(keys)
        | st.sampled_from(PATHOLOGICAL)
        | json_values.map(lambda v: json.dumps(v).encode())
    )


@PROPERTY
@given(any_input(REAL_EVENT, ["job_id", "event_type", "timestamp", "progress", "data"]))
@example(REAL_EVENT)
def test_job_events(data: bytes) -> None:
    update = total(decode_job_event, data)
    if update is not None:
        assert lifecycle.accepts(None, update)
        assert lifecycle.rank(update.status) in (0, 1, 2)
        update.job_id.encode()


@PROPERTY
@given(
    job_id=st.text("abcXYZ0189._:-", min_size=1, max_size=128),
    event_type=st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=32),
    timestamp=st.integers(0, 10**18 - 1),
    progress=st.integers(0, 10**18 - 1),
)
def test_job_event_fast_path_agrees_with_validation(
    job_id: str, event_type: str, timestamp: int, progress: int
) -> None:
    # The real server's serialisation takes the fast path; the same fields in another key order
    # take the validating path. Both must give the same update.
    fields = {"job_id": job_id, "event_type": event_type, "timestamp": timestamp}
    real = json.dumps({**fields, "progress": progress}).encode()
    reordered = json.dumps({"progress": progress, **fields}).encode()
    assert decode_job_event(real) == decode_job_event(reordered)


@PROPERTY
@given(any_input(REAL_WORKER, ["id", "worker_id", "capabilities", "idle_count", "timestamp"]))
@example(REAL_WORKER)
def test_capability_messages(data: bytes) -> None:
    info = total(worker_1, data)
    if info is not None:
        repr(info)


JOB_KEYS = ["job_id", "task_type", "status", "progress", "params", "task_output", "created_at"]


@PROPERTY
@given(any_input(REAL_JOB, JOB_KEYS))
@example(REAL_JOB)
def test_job_responses_and_status_messages(data: bytes) -> None:
    job = total(decode_job_response, data)
    update = total(decode_job_status, data)
    assert (job is None) == (update is None)
    if job is not None:
        repr(job)
        json.dumps(job.model_dump())


@PROPERTY
@given(st.binary(max_size=400) | st.sampled_from(PATHOLOGICAL))
def test_bounded_json(data: bytes) -> None:
    value = total(bounded_json, data)
    if value is not None:
        json.dumps(value, allow_nan=False).encode("utf-8")


# -- result files -------------------------------------------------------------------------------


def npy(header: str, payload: bytes = b"", major: int = 1) -> bytes:
    encoded = header.encode("latin1" if major < 3 else "utf-8", errors="replace")
    size = struct.pack("<H", len(encoded)) if major == 1 else struct.pack("<I", len(encoded))
    return b"\x93NUMPY" + bytes([major, 0]) + size + encoded + payload


header_text = st.text(
    alphabet="{}()',: 0123456789TrueFalsedescrshapefortran_order<>=|f248-", max_size=80
)
real_header = st.builds(
    header_of,
    st.sampled_from(["<", ">", "=", "|"]),
    st.sampled_from([2, 4, 8]),
    st.lists(st.integers(0, 4), max_size=3).map(tuple),
)


@PROPERTY
@given(
    st.binary(max_size=200)
    | st.builds(npy, header_text | real_header, st.binary(max_size=64), st.sampled_from([1, 2, 3]))
    | st.builds(npy, st.sampled_from(["{" * 5000, "(" * 5000, "{'shape': (" + "9" * 5000 + ",)}"]))
)
@example(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", b"\x00" * 8))
def test_npy_files(data: bytes) -> None:
    array = total(parse_npy, data)
    if array is not None:
        values = array.tolist()
        assert len(values) == math.prod(array.shape)
        array.to_numpy()


playlist_lines = st.lists(
    st.sampled_from(["#EXTM3U", "#EXT-X-STREAM-INF:BANDWIDTH=1", '#EXT-X-MAP:URI="init.mp4"'])
    | st.text(max_size=30),
    max_size=8,
).map(lambda lines: "\n".join(lines).encode("utf-8", errors="surrogatepass"))


@PROPERTY
@given(st.binary(max_size=300) | playlist_lines)
@example(b'#EXTM3U\nseg-000.ts\n#EXT-X-MEDIA:URI="a\x00b.m3u8"\n')
def test_hls_playlists(data: bytes) -> None:
    uris = total(playlist, data)
    if uris is not None:
        for uri in uris:
            with contextlib.suppress(ProtocolError, DownloadError):
                _resolve("output", uri, "playlist")


exif_shaped: st.SearchStrategy[object] = st.fixed_dictionaries(
    {},
    optional={
        "make": json_values,
        "iso": json_values,
        "f_number": json_values,
        "gps_latitude": json_values,
        "raw_metadata": json_values,
    },
)
boxes: st.SearchStrategy[object] = (
    st.lists(st.floats(allow_nan=False), min_size=4, max_size=4) | json_values
)
one_face: st.SearchStrategy[object] = st.fixed_dictionaries(
    {"bbox": boxes, "confidence": json_values},
    optional={"landmarks": json_values, "file_path": json_values},
)
sizes: st.SearchStrategy[object] = st.integers(1, 10_000) | json_values
face_shaped: st.SearchStrategy[object] = st.fixed_dictionaries(
    {"image_width": sizes, "image_height": sizes},
    optional={"faces": st.lists(one_face, max_size=3)},
)


@PROPERTY
@given(exif_shaped | json_values)
def test_exif_output(value: object) -> None:
    metadata = total(exif, value)
    if metadata is not None:
        metadata.get("Make")
        metadata.get("EXIF:ISO", 0)


@PROPERTY
@given(face_shaped | json_values)
def test_face_detection_output(value: object) -> None:
    output = total(faces, value)
    if output is not None:
        for face in output.faces:
            face.bbox.to_pixels(1920, 1080)


@PROPERTY
@given(any_input(b'{"hash_value": "ab", "algorithm": "md5"}', ["hash_value", "algorithm"]))
def test_hash_json(data: bytes) -> None:
    total(hash_json, data)


@pytest.mark.parametrize("data", PATHOLOGICAL)
def test_pathological_inputs_everywhere(data: bytes) -> None:
    decoders: list[Callable[[bytes], object]] = [
        decode_job_event,
        decode_job_status,
        decode_job_response,
        worker_1,
        hash_json,
        playlist,
        parse_npy,
    ]
    for decode in decoders:
        total(decode, data)
