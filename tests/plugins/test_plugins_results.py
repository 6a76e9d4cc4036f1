"""Typed results without a server: the ``.npy`` reader (with and without numpy), payload models,
playlist parsing, parameter checks, and the parallel helpers."""

from __future__ import annotations

import io
import math
import struct
from pathlib import Path
from typing import cast

import anyio
import numpy as np
import numpy.typing as npt
import pytest

from cl_client import DownloadError, JobFailedError, JobResponse, ParameterError, ProtocolError
from cl_client.plugins import (
    BoundingBox,
    DetectedFace,
    EmbeddingResult,
    ExifMetadata,
    FaceDetectionResult,
    HlsResult,
    HlsVariant,
    JobCompletions,
    Outcome,
    gather_parallel,
    numpy_available,
    parse_npy,
    run_parallel,
)
from cl_client.plugins import _results as results_module
from cl_client.plugins._base import (
    check_bool,
    check_choice,
    check_float,
    check_int,
    check_optional_int,
    json_param,
)
from cl_client.plugins._exif import exif_tags
from cl_client.plugins._hls_streaming import (
    DEFAULT_VARIANTS,
    _resolve,
    hls_variants,
    master_job_path,
    playlist_uris,
)
from cl_client.plugins._results import (
    FaceDetectionOutput,
    HashOutput,
    build_embedding,
    check_numpy,
    parse_json_payload,
    parse_payload,
)


def npy_bytes(array: npt.NDArray[np.generic], version: tuple[int, int] | None = None) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, version=version)
    return buffer.getvalue()


def job(
    task_output: dict[str, object] | None = None, task_type: str = "clip_embedding"
) -> JobResponse:
    return JobResponse.model_validate(
        {"job_id": "j", "task_type": task_type, "status": "completed", "task_output": task_output}
    )


# ------------------------------------------------------------------------------------------ .npy


@pytest.mark.parametrize(
    ("dtype", "version"),
    [("<f4", None), ("<f8", None), (">f4", None), ("<f2", None), ("<f4", (2, 0)), ("<f4", (3, 0))],
)
def test_parse_npy_matches_numpy(dtype: str, version: tuple[int, int] | None) -> None:
    values = np.linspace(-1, 1, 7, dtype=np.dtype(dtype))
    parsed = parse_npy(npy_bytes(values, version))
    assert parsed.shape == (7,) and parsed.size == 7 and parsed.descr == np.dtype(dtype).str
    assert parsed.tolist() == [float(v) for v in cast(list[float], values.tolist())]
    as_array = parsed.to_numpy()
    assert as_array.dtype == np.float32 and as_array.flags.writeable
    assert np.array_equal(as_array, values.astype(np.float32))


def test_parse_npy_multi_dimensional_and_empty() -> None:
    grid = np.arange(6, dtype=np.float32).reshape(2, 3)
    parsed = parse_npy(npy_bytes(grid))
    assert parsed.shape == (2, 3)
    assert parsed.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert parsed.to_numpy().shape == (2, 3)
    assert parse_npy(npy_bytes(np.zeros(0, dtype=np.float32))).tolist() == []


def raw_npy(header: str, data: bytes = b"", major: int = 1) -> bytes:
    encoded = header.encode("latin1")
    if major == 1:
        return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(encoded)) + encoded + data
    return b"\x93NUMPY" + bytes([major, 0]) + struct.pack("<I", len(encoded)) + encoded + data


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not numpy at all", "magic"),
        (b"\x93NUMPY\x09\x00\x00\x00", "version 9.0"),
        (b"\x93NUMPY\x02\x00\x00\x00", "truncated"),
        (b"\x93NUMPY\x01\x00\xff\x00{}", "truncated"),
        (raw_npy("{'descr': '<f4', "), "malformed"),
        (raw_npy("[1, 2]"), "malformed"),
        (raw_npy("{'descr': '<i4', 'fortran_order': False, 'shape': (1,)}"), "dtype '<i4'"),
        (raw_npy("{'descr': '<f3', 'fortran_order': False, 'shape': (1,)}"), "dtype"),
        (raw_npy("{'descr': 5, 'fortran_order': False, 'shape': (1,)}"), "malformed"),
        (raw_npy("{'fortran_order': False, 'shape': (1,)}"), "dtype None"),
        (raw_npy("{'descr': '<f4', 'fortran_order': True, 'shape': (1,)}"), "Fortran"),
        (raw_npy("{'descr': '<f4', 'fortran_order': False, 'shape': [1]}"), "malformed"),
        (raw_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,)}"), "malformed"),
        (raw_npy("{'descr': '<f4', 'fortran_order': False, 'shape': 'x'}"), "shape 'x'"),
        (raw_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,)}", b"1234"), "needs 8"),
    ],
)
def test_parse_npy_rejects_what_it_cannot_read(data: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        parse_npy(data)


@pytest.mark.parametrize(
    "data",
    [
        raw_npy("-" * 5000 + "1"),  # RecursionError in ast.literal_eval before
        raw_npy("+" * 50_000 + "1", major=2),  # MemoryError before
        b"\x93NUMPY\x03\x00" + struct.pack("<I", 14) + b"{'descr': '\xff'}",  # UnicodeDecodeError
        raw_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (" + "9" * 5000 + ",)}"),
        raw_npy("{'shape': " + "(" * 3000 + ")" * 3000 + "}"),
        raw_npy("{'descr': '<f\u00b2', 'fortran_order': False, 'shape': (1,)}", major=3),
        raw_npy(" " * 70_000, major=2),  # a header larger than numpy itself reads
    ],
    ids=[
        "unary-minus",
        "unary-plus",
        "not-utf8",
        "huge-dim",
        "deep-tuple",
        "unicode-digit",
        "long",
    ],
)
def test_parse_npy_crafted_headers_are_protocol_errors(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_npy(data)


def test_build_embedding_checks_the_shape_and_picks_the_vector_type(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = npy_bytes(np.ones(4, dtype=np.float32) / 2)
    done = job({"embedding_dim": 4, "normalized": True})
    as_array = build_embedding(done, data, default_dim=512, numpy=None)
    assert numpy_available() and isinstance(as_array.vector, np.ndarray)
    assert as_array.dim == 4 and as_array.normalized is True and as_array.quality_score is None
    as_list = build_embedding(done, data, default_dim=512, numpy=False)
    assert as_list.vector == [0.5] * 4 and as_list.tolist() == as_array.tolist() == [0.5] * 4
    assert build_embedding(job(None), data, default_dim=4, numpy=True).dim == 4
    with pytest.raises(ProtocolError, match=r"has shape \(4,\), expected \(512,\)"):
        build_embedding(job({}), data, default_dim=512, numpy=None)
    with pytest.raises(ProtocolError, match="unexpected clip_embedding output"):
        build_embedding(job({"embedding_dim": "many"}), data, default_dim=4, numpy=None)
    monkeypatch.setattr(results_module, "numpy_available", lambda: False)
    assert isinstance(build_embedding(done, data, default_dim=4, numpy=None).vector, list)
    with pytest.raises(ParameterError, match="numpy is not installed"):
        build_embedding(done, data, default_dim=4, numpy=True)
    with pytest.raises(ParameterError, match="numpy must be None, True or False"):
        check_numpy("yes")


# -------------------------------------------------------------------------------------- payloads


def test_exif_metadata_lookup() -> None:
    metadata = ExifMetadata.model_validate(
        {
            "make": None,
            "raw_metadata": {"EXIF:Make": "Cam", "File:MIMEType": "image/jpeg", "ISO": 5},
        }
    )
    assert metadata.get("ISO") == 5
    assert metadata.get("Make") == "Cam"
    assert metadata.get("exif:make") == "Cam"
    assert metadata.get("Model") is None and metadata.get("Model", "-") == "-"


def test_faces_boxes_and_payload_errors() -> None:
    face = DetectedFace.model_validate(
        {
            "bbox": [0.1, 0.2, 0.5, 0.6],
            "confidence": 0.9,
            "landmarks": {
                "right_eye": [0.2, 0.3],
                "left_eye": [0.4, 0.3],
                "nose_tip": [0.3, 0.4],
                "mouth_right": [0.25, 0.5],
                "mouth_left": [0.35, 0.5],
            },
            "file_path": "faces/face_0.png",
        }
    )
    assert face.bbox == BoundingBox(x1=0.1, y1=0.2, x2=0.5, y2=0.6)
    assert math.isclose(face.bbox.width, 0.4) and math.isclose(face.bbox.height, 0.4)
    assert face.bbox.to_pixels(100, 50) == (10, 10, 50, 30)
    assert face.landmarks is not None and face.landmarks.nose_tip == (0.3, 0.4)
    output = parse_payload(
        FaceDetectionOutput,
        {"faces": [face.model_dump()], "num_faces": 1, "image_width": 100, "image_height": 50},
        "faces",
    )
    result = FaceDetectionResult(job(), output.faces, output.image_width, output.image_height)
    assert result.num_faces == 1
    with pytest.raises(ProtocolError, match="unexpected faces"):
        parse_payload(FaceDetectionOutput, {"faces": "none"}, "faces")
    with pytest.raises(ProtocolError, match="bbox"):
        parse_payload(DetectedFace, {"bbox": [1, 2, 3], "confidence": 1}, "face")
    digest = parse_json_payload(HashOutput, b'{"hash_value": "ab", "algorithm": "md5"}', "h")
    assert digest.hash_value == "ab" and digest.media_type is None
    with pytest.raises(ProtocolError, match=r"hash\.json is not JSON"):
        parse_json_payload(HashOutput, b"not json", "hash.json")
    with pytest.raises(ProtocolError, match=r"unexpected hash\.json"):
        parse_json_payload(HashOutput, b'{"hash_value": 1}', "hash.json")


def test_result_containers() -> None:
    embedding = EmbeddingResult(job(), [1.0, 2.0], 2, None)
    assert embedding.tolist() == [1.0, 2.0] and "vector" not in repr(embedding)
    bundle = HlsResult(
        job(), Path("d"), Path("d/m.m3u8"), [Path("d/v.m3u8")], [Path("d/v-0.ts")], 1, 1, False
    )
    assert bundle.files == [Path("d/m.m3u8"), Path("d/v.m3u8"), Path("d/v-0.ts")]


# --------------------------------------------------------------------------------------- HLS


def test_playlist_uris() -> None:
    master = "\n".join(
        [
            "#EXTM3U",
            '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="a",URI="audio/a.m3u8"',
            "#EXT-X-STREAM-INF:BANDWIDTH=1000",
            "low.m3u8",
            "",
            '#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=10,URI="iframes.m3u8"',
            '#EXT-X-KEY:METHOD=AES-128,URI="key.bin"',
            '#EXT-X-MAP:URI="init.mp4"',
            "low.m3u8",
            "  seg-000.ts  ",
        ]
    )
    assert playlist_uris(master) == [
        "audio/a.m3u8",
        "low.m3u8",
        "iframes.m3u8",
        "init.mp4",
        "seg-000.ts",
    ]


def test_master_playlist_paths() -> None:
    assert (
        master_job_path("/srv/data/compute/jobs/abc/output/adaptive.m3u8", "abc", "output")
        == "output/adaptive.m3u8"
    )
    assert master_job_path("C:\\data\\jobs\\abc\\output\\a.m3u8", "abc", None) == "output/a.m3u8"
    assert master_job_path("output/adaptive.m3u8", "abc", None) == "output/adaptive.m3u8"
    assert master_job_path("/elsewhere/adaptive.m3u8", "abc", "out/") == "out/adaptive.m3u8"
    assert master_job_path("../x.m3u8", "abc", None) == "output/adaptive.m3u8"
    assert _resolve("output", "a%20b.ts?x=1", "p") == "output/a b.ts"
    assert _resolve("output", "../input/x.ts", "p") == "input/x.ts"
    with pytest.raises(ProtocolError, match="not a relative file path"):
        _resolve("output", "https://cdn.example/x.ts", "the master playlist")
    with pytest.raises(ProtocolError, match="not a relative file path"):
        _resolve("output", "/etc/passwd", "p")
    with pytest.raises(DownloadError, match="outside the job directory"):
        _resolve("output", "../../x.ts", "p")


def test_hls_variants_forms() -> None:
    assert hls_variants(DEFAULT_VARIANTS) == [HlsVariant(720, 3500), HlsVariant(480, 1500)]
    assert hls_variants([(240, 400), {"resolution": 360, "bitrate": 800}]) == [
        HlsVariant(240, 400),
        HlsVariant(360, 800),
    ]
    for bad, message in [
        ("720", "must be a list"),
        (5, "must be a list"),
        ([], "at least one"),
        ([(240,)], "HlsVariant"),
        ([{"resolution": 240, "bitrate": 400, "x": 1}], "HlsVariant"),
        ([(240, True)], "bitrate"),
        ([(None, 400)], "resolution"),
    ]:
        with pytest.raises(ParameterError, match=message):
            hls_variants(bad)


# --------------------------------------------------------------------------------- parameters


def test_parameter_checks() -> None:
    assert exif_tags(None) == exif_tags("") == exif_tags(" , ") == ""
    assert exif_tags(" Make, Model ,") == "Make,Model"
    assert exif_tags(("EXIF:Make", "XMP-dc:Subject")) == "EXIF:Make,XMP-dc:Subject"
    with pytest.raises(ParameterError, match="tags must be ExifTool tag names"):
        exif_tags(["Make,Model"])
    assert check_bool("flag", False) is False
    assert check_int("n", 3, minimum=1) == 3
    with pytest.raises(ParameterError, match=r"n must be an integer <= 2, got 3"):
        check_int("n", 3, maximum=2)
    with pytest.raises(ParameterError, match=r"n must be an integer , got 'x'"):
        check_int("n", "x")
    assert check_optional_int("w", None, minimum=1) is None
    assert check_float("t", 1, minimum=0, maximum=1) == 1.0
    assert check_choice("c", "a", ("a", "b")) == "a"
    with pytest.raises(ParameterError, match="c must be one of 'a', 'b'; got 'z'"):
        check_choice("c", "z", ("a", "b"))
    assert json_param([{"resolution": 1, "bitrate": 2}]) == '[{"resolution":1,"bitrate":2}]'


# ----------------------------------------------------------------------------------- parallel


async def test_run_parallel_limits_concurrency_and_reports_failures_per_item() -> None:
    running = 0
    peak = 0

    async def work(n: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            await anyio.sleep(0.01 * (5 - n % 5))
            if n % 4 == 3:
                raise ValueError(f"bad item {n}")
            return n * n
        finally:
            running -= 1

    seen: list[Outcome[int, int]] = []
    async with run_parallel(work, iter(range(10)), limit=3) as results:
        async for outcome in results:
            seen.append(outcome)
    assert peak == 3
    assert sorted(o.index for o in seen) == list(range(10))
    assert [o.index for o in seen] != list(range(10))  # completion order, not input order
    failed = [o for o in seen if not o.ok]
    assert [o.item for o in sorted(failed, key=lambda o: o.index)] == [3, 7]
    for outcome in failed:
        assert isinstance(outcome.error, ValueError)
        with pytest.raises(ValueError, match="bad item"):
            outcome.unwrap()
    ordered = await gather_parallel(work, range(10), limit=10)
    assert [o.index for o in ordered] == list(range(10))
    assert [o.unwrap() for o in ordered if o.ok] == [n * n for n in range(10) if n % 4 != 3]


async def test_run_parallel_call_finishing_after_the_consumer_was_cancelled() -> None:
    """A call that completes a shielded step after the consumer was cancelled (as a download
    finishing in a worker thread does) must not raise BrokenResourceError into the block."""
    release = anyio.Event()

    async def stubborn(n: int) -> int:
        with anyio.CancelScope(shield=True):
            await release.wait()
        return n  # no checkpoint after the shielded step: the call returns normally

    async def consume(scope: anyio.CancelScope) -> None:
        with scope:
            async with run_parallel(stubborn, range(2), limit=2) as results:
                async for _ in results:  # pragma: no cover - cancelled before any outcome
                    pass

    scope = anyio.CancelScope()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume, scope)
            await anyio.sleep(0.05)
            scope.cancel()  # the consumer leaves; the calls are still in their shielded step
            await anyio.sleep(0.05)
            release.set()
    assert scope.cancelled_caught


async def test_run_parallel_leaving_early_cancels_and_errors_are_not_grouped() -> None:
    started: list[int] = []

    async def slow(n: int) -> int:
        started.append(n)
        await anyio.sleep(0 if n == 0 else 10)
        return n

    with anyio.fail_after(5):
        async with run_parallel(slow, range(100), limit=4) as results:
            async for outcome in results:
                assert outcome.value == 0
                break
    assert 4 <= len(started) <= 5  # the rest never started; the slow ones were cancelled

    with pytest.raises(KeyError, match="body"):
        async with run_parallel(slow, range(3), limit=2):
            raise KeyError("body")

    async def never(n: int) -> int:
        return n

    class Items:
        def __iter__(self) -> Items:
            return self

        def __next__(self) -> int:
            raise RuntimeError("iteration failed")

    with pytest.raises(RuntimeError, match="iteration failed"):
        await gather_parallel(never, Items(), limit=1)
    with pytest.raises(ParameterError, match="limit must be an integer >= 1"):
        await gather_parallel(never, [1], limit=0)


async def test_job_completions() -> None:
    done = JobCompletions()
    ok = JobResponse(job_id="a", status="completed")
    bad = JobResponse(job_id="b", status="error", error_message="boom")
    done.on_complete(ok)  # before expect: kept
    done.expect(ok)
    done.expect("b")
    assert done.pending == ["b"] and list(done.done) == ["a"] and "expected=2" in repr(done)

    async def later() -> None:
        await anyio.sleep(0.01)
        done.on_complete(bad)

    finished: dict[str, JobResponse] = {}
    async with anyio.create_task_group() as tg:
        tg.start_soon(later)
        with anyio.fail_after(5):
            finished = await done.wait_all()
    assert list(finished) == ["a", "b"] and done.failed == [bad]
    with pytest.raises(JobFailedError, match="boom"):
        await done.wait_all(raise_on_error=True)
