"""The local compute service's plugins: task functions on generated media, and the routes.

Task functions are called directly (``TASKS[name](ctx)``) and their files checked on disk. The
routes are exercised through FastAPI + ``httpx.ASGITransport`` with a fake submit function. The
video tests need ffmpeg and fail saying so without it; the tasks' own "ffmpeg is required" errors
are tested separately with ffmpeg hidden.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import shutil
import struct
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import httpx
import numpy as np
import numpy.typing as npt
import pytest
from fastapi import FastAPI, UploadFile
from PIL import Image, TiffImagePlugin
from pydantic import JsonValue, TypeAdapter

from cl_client.testing import TaskContext
from cl_client.testing.compute import _plugin_base, _plugin_exif, _plugin_ml
from cl_client.testing.compute._plugin_media import thumbnail_size
from cl_client.testing.compute._plugin_routes import PLUGIN_NAMES, plugin_router
from cl_client.testing.compute._plugin_tasks import TASKS
from tests.media import EXIF_FIELDS, make_face_jpeg, make_jpeg, make_png, make_text, make_video

FFMPEG_NEEDED = "ffmpeg is needed to make the test video (the imageio-ffmpeg package ships one)"
JSON = TypeAdapter(JsonValue)

OUTPUT_PATHS: dict[str, str] = {
    "clip_embedding": "output/clip_embedding.npy",
    "dino_embedding": "output/dino_embedding.npy",
    "exif": "output/exif_metadata.json",
    "face_detection": "output/face_detection.json",
    "face_embedding": "output/face_embedding.npy",
    "hash": "output/hash.json",
    "hls_streaming": "output",
    "image_conversion": "output/converted.png",
    "media_thumbnail": "output/thumbnail.jpg",
}


@dataclass
class Job:
    ctx: TaskContext
    progress: list[int] = field(default_factory=list[int])

    @property
    def job_dir(self) -> Path:
        return self.ctx.job_dir

    def file(self, rel: str) -> Path:
        return self.job_dir / rel

    def json_file(self, rel: str) -> dict[str, JsonValue]:
        return as_dict(JSON.validate_json(self.file(rel).read_bytes()))


def make_job(tmp_path: Path, task: str, source: Path, **params: JsonValue) -> Job:
    job_dir = tmp_path / f"job-{task}-{source.stem}"
    (job_dir / "input").mkdir(parents=True, exist_ok=True)
    (job_dir / "output").mkdir(exist_ok=True)
    upload = job_dir / "input" / source.name
    _ = shutil.copyfile(source, upload)
    stored: dict[str, JsonValue] = {
        "input_path": f"input/{source.name}",
        "output_path": OUTPUT_PATHS[task],
        **params,
    }
    progress: list[int] = []
    return Job(TaskContext(job_dir, upload, stored, progress.append), progress)


def run(
    tmp_path: Path, task: str, source: Path, **params: JsonValue
) -> tuple[Job, dict[str, JsonValue]]:
    job = make_job(tmp_path, task, source, **params)
    output = TASKS[task](job.ctx)
    assert job.progress
    assert job.progress[-1] == 100
    return job, output


def as_dict(value: JsonValue) -> dict[str, JsonValue]:
    assert isinstance(value, dict)
    return value


def as_list(value: JsonValue) -> list[JsonValue]:
    assert isinstance(value, list)
    return value


def as_float(value: JsonValue) -> float:
    assert isinstance(value, int | float)
    return float(value)


def read_npy(path: Path) -> list[float]:
    """Parse a 1-D float32 .npy (v1.0) without numpy."""
    raw = path.read_bytes()
    assert raw[:8] == b"\x93NUMPY\x01\x00"
    header_len = int.from_bytes(raw[8:10], "little")
    header = raw[10 : 10 + header_len].decode("latin1")
    assert "'descr': '<f4'" in header
    assert (10 + header_len) % 64 == 0
    data = raw[10 + header_len :]
    return [v for (v,) in struct.iter_unpack("<f", data)]


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="module")
def jpeg(media_dir: Path) -> Path:
    return make_jpeg(media_dir / "test_image_1920x1080.jpg")


@pytest.fixture(scope="module")
def png(media_dir: Path) -> Path:
    return make_png(media_dir / "test_image_800x600.png")


@pytest.fixture(scope="module")
def face(media_dir: Path) -> Path:
    return make_face_jpeg(media_dir / "test_face_single.jpg")


@pytest.fixture(scope="module")
def video(media_dir: Path) -> Path | None:
    return make_video(media_dir / "test_video.mp4", seconds=3, size=(320, 240))


@pytest.fixture
def no_ffmpeg(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(_plugin_base, "ffmpeg_path", lambda: None)
    yield


def test_ffmpeg_on_path_comes_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    system = tmp_path / "ffmpeg"
    _ = system.write_text("#!/bin/sh\n")
    system.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert _plugin_base.ffmpeg_path() == str(system)


def test_ffmpeg_from_the_imageio_ffmpeg_package_without_a_system_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import imageio_ffmpeg

    monkeypatch.setenv("PATH", str(tmp_path))  # no ffmpeg there
    shipped = _plugin_base.ffmpeg_path()
    assert shipped is not None and shipped == imageio_ffmpeg.get_ffmpeg_exe()
    result = subprocess.run([shipped, "-version"], capture_output=True, text=True, check=True)
    assert result.stdout.startswith("ffmpeg version")


def test_no_ffmpeg_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import imageio_ffmpeg

    monkeypatch.setenv("PATH", str(tmp_path))

    def no_binary() -> str:
        raise RuntimeError("No ffmpeg exe could be found.")

    monkeypatch.setattr(imageio_ffmpeg, "get_ffmpeg_exe", no_binary)
    assert _plugin_base.ffmpeg_path() is None
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # the package is not installed
    assert _plugin_base.ffmpeg_path() is None
    with pytest.raises(RuntimeError, match=r"^ffmpeg is required for tests but was not found"):
        _ = _plugin_base.run_ffmpeg(["-version"], what="tests")


# ------------------------------------------------------------------------------------------- hash


def test_hash_image_sha512_is_over_decoded_pixels(tmp_path: Path, jpeg: Path) -> None:
    job, output = run(tmp_path, "hash", jpeg, algorithm="sha512")
    assert output == {"media_type": "image"}
    result = job.json_file("output/hash.json")
    assert list(result) == ["hash_value", "algorithm", "media_type", "process_time"]
    with Image.open(jpeg) as img:
        expected = hashlib.sha512(img.tobytes()).hexdigest()
    assert result["hash_value"] == expected
    assert result["hash_value"] != hashlib.sha512(jpeg.read_bytes()).hexdigest()
    assert result["algorithm"] == "sha512_image"
    assert result["media_type"] == "image"
    assert as_float(result["process_time"]) >= 0


def test_hash_md5_is_over_file_bytes(tmp_path: Path, png: Path) -> None:
    job, output = run(tmp_path, "hash", png, algorithm="md5")
    assert output == {"media_type": "image"}
    result = job.json_file("output/hash.json")
    assert result["hash_value"] == hashlib.md5(png.read_bytes()).hexdigest()
    assert result["algorithm"] == "md5"


@pytest.mark.parametrize(
    ("content", "media_type", "algorithm"),
    [
        (b"just some notes\nsecond line\n", "text", "sha512_generic"),
        (b"https://example.com/a?b=c", "url", "sha512_generic"),
        (b"https://example.com/a?b=c\n", "text", "sha512_generic"),
        (bytes(range(256)) * 4, "file", "sha512_generic"),
        (b"", "file", "sha512_generic"),
        (b"ID3\x03\x00" + b"\x00" * 64, "audio", "sha512_generic"),
        (
            b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + b"\x00" * 64,
            "video",
            "sha512_video",
        ),
    ],
)
def test_hash_other_media_types(
    tmp_path: Path, content: bytes, media_type: str, algorithm: str
) -> None:
    source = tmp_path / "upload.bin"
    _ = source.write_bytes(content)
    job, output = run(tmp_path, "hash", source)
    assert output == {"media_type": media_type}
    result = job.json_file("output/hash.json")
    assert result["algorithm"] == algorithm
    assert result["hash_value"] == hashlib.sha512(content).hexdigest()


@pytest.mark.parametrize(
    ("content", "mime"),
    [
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", "audio/x-wav"),
        (b"RIFF\x00\x00\x00\x00AVI LIST", "video/x-msvideo"),
        (b"RIFF\x00\x00\x00\x00ABCD", "application/octet-stream"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00", "image/heic"),
        (b"\x00\x00\x00\x18ftypavif\x00\x00\x00\x00", "image/avif"),
        (b"\x00\x00\x00\x18ftypM4A \x00\x00\x00\x00", "audio/x-m4a"),
        (b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00", "video/quicktime"),
        (b"\x00\x00\x00\x14ftyp3gp4\x00\x00\x00\x00", "video/3gpp"),
        (b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp41", "video/mp4"),
        (b"OggS\x00\x02" + b"\x00" * 20 + b"\x80theora", "video/ogg"),
        (b"OggS\x00\x02" + b"\x00" * 20 + b"\x01vorbis", "audio/ogg"),
        (b"G" + b"\x00" * 187 + b"G" + b"\x00" * 10, "video/MP2T"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01webm", "video/webm"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01matroska", "video/x-matroska"),
        (b"\x00\x00\x01\xba\x44\x00", "video/mpeg"),
        (b"GIF89a\x01\x00", "image/gif"),
        (b"BM\x00\x00", "image/bmp"),
        (b"II*\x00\x08\x00", "image/tiff"),
        (b"%PDF-1.7\n", "application/pdf"),
        (b'<svg xmlns="http://www.w3.org/2000/svg"></svg>', "image/svg+xml"),
        (b'{"a": [1, 2]}', "application/json"),
        (b"{not json", "text/plain"),
        (b"caf\xc3\xa9\n", "text/plain"),
        (b"\xc3\x28 not utf-8", "application/octet-stream"),
        (b"abc\x00def", "application/octet-stream"),
    ],
)
def test_sniff_mime(content: bytes, mime: str) -> None:
    assert _plugin_base.sniff_mime(content) == mime


# ------------------------------------------------------------------------------------ thumbnail


@pytest.mark.parametrize(
    ("original", "width", "height", "keep", "expected"),
    [
        ((1920, 1080), 256, 256, True, (256, 144)),
        ((1080, 1920), 256, 256, True, (144, 256)),
        ((1920, 1080), 200, 100, False, (200, 100)),
        ((1920, 1080), 128, None, True, (128, 72)),
        ((1920, 1080), None, 72, True, (128, 72)),
        ((1920, 1080), 128, None, False, (128, 128)),
        ((1920, 1080), None, 72, False, (72, 72)),
        ((1920, 1080), None, None, True, (256, 256)),
        ((100, 50), 400, 400, True, (400, 200)),
    ],
)
def test_thumbnail_size(
    original: tuple[int, int],
    width: int | None,
    height: int | None,
    keep: bool,
    expected: tuple[int, int],
) -> None:
    assert thumbnail_size(original, width, height, keep) == expected


def test_thumbnail_of_jpeg_fits_box(tmp_path: Path, jpeg: Path) -> None:
    job, output = run(
        tmp_path, "media_thumbnail", jpeg, width=256, height=256, maintain_aspect_ratio=True
    )
    assert output == {"media_type": "image"}
    with Image.open(job.file("output/thumbnail.jpg")) as thumb:
        assert thumb.format == "JPEG"
        assert thumb.size == (256, 144)


def test_thumbnail_exact_size_and_alpha_png(tmp_path: Path, png: Path) -> None:
    job, output = run(
        tmp_path, "media_thumbnail", png, width=200, height=100, maintain_aspect_ratio=False
    )
    assert output == {"media_type": "image"}
    with Image.open(job.file("output/thumbnail.jpg")) as thumb:
        assert (thumb.format, thumb.mode, thumb.size) == ("JPEG", "RGB", (200, 100))


def test_thumbnail_defaults_without_sizes(tmp_path: Path, jpeg: Path) -> None:
    job, _ = run(tmp_path, "media_thumbnail", jpeg, width=None, height=None)
    with Image.open(job.file("output/thumbnail.jpg")) as thumb:
        assert thumb.size == (256, 256)


def test_thumbnail_rejects_text_and_bad_sizes(tmp_path: Path) -> None:
    text = make_text(tmp_path / "notes.txt", "https://example.com\n")
    job = make_job(tmp_path, "media_thumbnail", text)
    with pytest.raises(RuntimeError, match=r"^Unsupported media type: text\. Only image"):
        _ = TASKS["media_thumbnail"](job.ctx)
    image = make_png(tmp_path / "small.png", size=(40, 30), alpha=False)
    for name, message in (("width", "Width must be positive"), ("height", "Height must be")):
        job = make_job(tmp_path, "media_thumbnail", image, **{name: 0})
        with pytest.raises(ValueError, match=message):
            _ = TASKS["media_thumbnail"](job.ctx)


@pytest.mark.slow
def test_thumbnail_of_video(tmp_path: Path, video: Path | None) -> None:
    if video is None:  # the missing-ffmpeg path has its own test below
        pytest.fail(FFMPEG_NEEDED)
    source = video
    for width, height, box in (
        (160, 160, (160, 160)),
        (100, None, (100, 10**6)),
        (None, 50, (10**6, 50)),
    ):
        job, output = run(
            tmp_path / f"{width}-{height}", "media_thumbnail", source, width=width, height=height
        )
        assert output == {"media_type": "video"}
        with Image.open(job.file("output/thumbnail.jpg")) as thumb:
            assert thumb.format == "JPEG"
            assert thumb.size[0] <= box[0]
            assert thumb.size[1] <= box[1]
    job, _ = run(tmp_path / "default", "media_thumbnail", source)
    with Image.open(job.file("output/thumbnail.jpg")) as thumb:
        assert max(thumb.size) <= 256


def test_thumbnail_of_video_without_ffmpeg(tmp_path: Path, no_ffmpeg: None) -> None:
    source = tmp_path / "clip.mp4"
    _ = source.write_bytes(b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2")
    job = make_job(tmp_path, "media_thumbnail", source)
    with pytest.raises(RuntimeError, match="ffmpeg is required for video thumbnails"):
        _ = TASKS["media_thumbnail"](job.ctx)


# ------------------------------------------------------------------------------ image conversion


@pytest.mark.parametrize(
    ("fmt", "pil_format", "mode"),
    [
        ("jpg", "JPEG", "RGB"),
        ("jpeg", "JPEG", "RGB"),
        ("png", "PNG", "RGBA"),
        ("webp", "WEBP", "RGBA"),
        ("gif", "GIF", "P"),
        ("bmp", "BMP", None),
        ("tiff", "TIFF", "RGBA"),
    ],
)
def test_image_conversion_formats(
    tmp_path: Path, png: Path, fmt: str, pil_format: str, mode: str | None
) -> None:
    ext = "jpg" if fmt == "jpeg" else fmt
    rel = f"output/converted_{png.stem}.{ext}"
    job = make_job(tmp_path, "image_conversion", png, format=fmt, quality=85, output_path=rel)
    assert TASKS["image_conversion"](job.ctx) == {}
    with Image.open(job.file(rel)) as converted:
        assert converted.format == pil_format
        assert mode is None or converted.mode == mode
        assert converted.size == (800, 600)


def test_image_conversion_quality_and_palette(tmp_path: Path, jpeg: Path) -> None:
    sizes: list[int] = []
    for quality in (10, 95):
        rel = f"output/converted_q{quality}.jpg"
        job = make_job(
            tmp_path / str(quality),
            "image_conversion",
            jpeg,
            format="jpg",
            quality=quality,
            output_path=rel,
        )
        _ = TASKS["image_conversion"](job.ctx)
        sizes.append(job.file(rel).stat().st_size)
    assert sizes[0] < sizes[1]
    palette = tmp_path / "palette.png"
    Image.new("P", (32, 16), 3).save(palette)
    job = make_job(tmp_path, "image_conversion", palette, format="jpeg", output_path="output/c.jpg")
    _ = TASKS["image_conversion"](job.ctx)
    with Image.open(job.file("output/c.jpg")) as converted:
        assert (converted.format, converted.mode) == ("JPEG", "RGB")


# ----------------------------------------------------------------------------------- embeddings


@pytest.mark.parametrize(
    ("task", "dim", "normalize"),
    [
        ("clip_embedding", 512, True),
        ("clip_embedding", 512, False),
        ("dino_embedding", 384, True),
        ("dino_embedding", 384, False),
        ("face_embedding", 512, True),
        ("face_embedding", 512, False),
    ],
)
def test_embeddings(
    tmp_path: Path, face: Path, jpeg: Path, task: str, dim: int, normalize: bool
) -> None:
    job, output = run(tmp_path, task, face, normalize=normalize)
    assert output["embedding_dim"] == dim
    assert output["normalized"] is normalize
    if task == "face_embedding":
        assert list(output) == ["normalized", "embedding_dim", "quality_score"]
        assert 0.5 <= as_float(output["quality_score"]) < 1.0
    npy = job.file(OUTPUT_PATHS[task])
    vector = read_npy(npy)
    assert len(vector) == dim
    norm = math.sqrt(math.fsum(v * v for v in vector))
    assert (abs(norm - 1.0) < 1e-5) is normalize
    loaded = cast(npt.NDArray[np.float32], np.load(npy))
    assert loaded.dtype == np.dtype("<f4")
    assert loaded.shape == (dim,)
    again, _ = run(tmp_path / "again", task, face, normalize=normalize)
    assert again.file(OUTPUT_PATHS[task]).read_bytes() == npy.read_bytes()
    other, _ = run(tmp_path / "other", task, jpeg, normalize=normalize)
    assert read_npy(other.file(OUTPUT_PATHS[task])) != vector


@pytest.mark.parametrize("count", [1, 3, 384, 512, 1000])
def test_npy_writer_matches_numpy(tmp_path: Path, count: int) -> None:
    values = [i / 7 - 3.0 for i in range(count)]
    ours = tmp_path / "ours.npy"
    _plugin_base.write_npy_f4(ours, values)
    buffer = io.BytesIO()
    np.save(buffer, np.array(values, dtype="<f4"))
    assert ours.read_bytes() == buffer.getvalue()


def test_embedding_of_non_image_fails(tmp_path: Path) -> None:
    job = make_job(tmp_path, "clip_embedding", make_text(tmp_path / "a.txt"))
    with pytest.raises(Exception, match="cannot identify image file"):
        _ = TASKS["clip_embedding"](job.ctx)


# ------------------------------------------------------------------------------- face detection


def test_face_detection_single_face(tmp_path: Path, face: Path) -> None:
    job, output = run(tmp_path, "face_detection", face, confidence_threshold=0.7, nms_threshold=0.4)
    assert list(output) == ["faces", "num_faces", "image_width", "image_height"]
    assert (output["num_faces"], output["image_width"], output["image_height"]) == (1, 640, 480)
    detected = as_dict(as_list(output["faces"])[0])
    assert list(detected) == ["bbox", "confidence", "landmarks", "file_path"]
    bbox = as_dict(detected["bbox"])
    assert list(bbox) == ["x1", "y1", "x2", "y2"]
    x1, y1, x2, y2 = (as_float(bbox[k]) for k in ("x1", "y1", "x2", "y2"))
    assert 0.0 <= x1 < x2 <= 1.0
    assert 0.0 <= y1 < y2 <= 1.0
    assert 0.7 <= as_float(detected["confidence"]) <= 1.0
    landmarks = as_dict(detected["landmarks"])
    assert list(landmarks) == ["right_eye", "left_eye", "nose_tip", "mouth_right", "mouth_left"]
    for point in landmarks.values():
        x, y = (as_float(c) for c in as_list(point))
        assert x1 <= x <= x2
        assert y1 <= y <= y2
    assert as_float(as_list(landmarks["right_eye"])[0]) < as_float(
        as_list(landmarks["left_eye"])[0]
    )
    assert detected["file_path"] == "faces/face_0.png"
    with Image.open(job.file("faces/face_0.png")) as crop:
        assert (crop.format, crop.size) == ("PNG", (112, 112))
    assert job.json_file("output/face_detection.json") == output


def test_face_detection_multiple_threshold_and_none(tmp_path: Path, jpeg: Path) -> None:
    several = make_face_jpeg(tmp_path / "test_face_multiple.jpg", faces=3, size=(900, 400))
    job, output = run(tmp_path, "face_detection", several)
    assert output["num_faces"] == 3
    for i in range(3):
        assert job.file(f"faces/face_{i}.png").is_file()
    _, strict = run(tmp_path / "strict", "face_detection", several, confidence_threshold=0.99)
    assert strict["num_faces"] == 0
    assert strict["faces"] == []
    _, empty = run(tmp_path / "none", "face_detection", jpeg)
    assert (empty["num_faces"], empty["image_width"], empty["image_height"]) == (0, 1920, 1080)


def test_face_nms_drops_overlapping_boxes() -> None:
    boxes: list[_plugin_ml.Box] = [
        {"x1": 0.1, "y1": 0.1, "x2": 0.5, "y2": 0.5, "confidence": 0.8},
        {"x1": 0.12, "y1": 0.1, "x2": 0.52, "y2": 0.5, "confidence": 0.9},
        {"x1": 0.6, "y1": 0.6, "x2": 0.6, "y2": 0.6, "confidence": 0.75},
    ]
    kept = _plugin_ml.nms(boxes, 0.4)
    assert [b["confidence"] for b in kept] == [0.9, 0.75]
    assert len(_plugin_ml.nms(boxes, 1.0)) == 3


# ----------------------------------------------------------------------------------------- exif


def test_exif_all_tags_are_group_prefixed(tmp_path: Path, jpeg: Path) -> None:
    job, output = run(tmp_path, "exif", jpeg, tags=[])
    typed = {k: v for k, v in output.items() if k != "raw_metadata"}
    assert len(typed) == 15
    assert all(v is None for v in typed.values())
    raw = as_dict(output["raw_metadata"])
    assert raw["SourceFile"] == str(job.ctx.input_path.resolve())
    assert all(":" in key for key in raw if key != "SourceFile")
    assert raw["File:MIMEType"] == "image/jpeg"
    assert raw["File:FileType"] == "JPEG"
    assert raw["File:ImageWidth"] == 1920
    assert raw["EXIF:Make"] == EXIF_FIELDS["Make"]
    assert raw["EXIF:ISO"] == EXIF_FIELDS["ISO"]
    assert raw["EXIF:ExposureTime"] == EXIF_FIELDS["ExposureTime"]
    assert raw["EXIF:GPSLatitudeRef"] == "N"
    assert raw["EXIF:GPSVersionID"] == "2 3 0 0"
    assert raw["Composite:GPSLongitude"] == pytest.approx(EXIF_FIELDS["GPSLongitude"], abs=1e-6)
    assert raw["Composite:ImageSize"] == "1920 1080"
    assert job.json_file("output/exif_metadata.json") == output


def test_exif_selected_tags_fill_typed_fields(tmp_path: Path, jpeg: Path) -> None:
    tags: list[JsonValue] = ["Make", "EXIF:Model", "iso", "FNumber", "ExposureTime", "FocalLength"]
    tags += ["DateTimeOriginal", "CreateDate", "GPSLatitude", "GPSLongitude", "GPSAltitude"]
    tags += ["ImageWidth", "Orientation", "Software", "NoSuchTag"]
    job, output = run(tmp_path, "exif", jpeg, tags=tags)
    assert output["make"] == "TestMake"
    assert output["model"] == "TestModel X1"
    assert output["iso"] == 200
    assert output["f_number"] == 2.8
    assert output["focal_length"] == 50.0
    assert output["date_time_original"] == output["create_date"] == "2024:06:20 16:45:30"
    assert output["gps_latitude"] == pytest.approx(37.7749, abs=1e-6)
    assert output["gps_longitude"] == pytest.approx(-122.4194, abs=1e-6)
    assert output["gps_altitude"] == 10.5
    assert (output["image_width"], output["image_height"]) == (1920, None)
    assert output["orientation"] == 1
    assert output["software"] == "cl-client tests"
    assert output["exposure_time"] is None  # -n makes it the number 0.004, not a string
    raw = as_dict(output["raw_metadata"])
    assert raw["SourceFile"] == str(job.ctx.input_path.resolve())
    assert raw["ExposureTime"] == 0.004
    assert "NoSuchTag" not in raw
    assert all(":" not in key for key in raw)


def test_exif_without_exif_and_non_images(tmp_path: Path, png: Path) -> None:
    _, output = run(tmp_path, "exif", png)
    raw = as_dict(output["raw_metadata"])
    assert raw["File:MIMEType"] == "image/png"
    assert not any(key.startswith("EXIF:") for key in raw)
    text = make_text(tmp_path / "notes.txt")
    _, output = run(tmp_path / "text", "exif", text, tags=["MIMEType", "FileType"])
    assert output["raw_metadata"] == {
        "SourceFile": str((tmp_path / "text/job-exif-notes/input/notes.txt").resolve()),
        "MIMEType": "text/plain",
        "FileType": "TXT",
    }
    binary = tmp_path / "blob.bin"
    _ = binary.write_bytes(bytes(range(256)))
    _, output = run(tmp_path / "bin", "exif", binary)
    assert output["raw_metadata"] == {}
    assert all(v is None for k, v in output.items() if k != "raw_metadata")


def test_exif_southern_western_and_below_sea_level(tmp_path: Path) -> None:
    exif = Image.Exif()
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2], gps[3], gps[4] = "S", (33.0, 51.0, 54.0), "W", (70.0, 30.0, 0.0)
    gps[5], gps[6], gps[7] = 1, 12.25, (10.0, 5.0, 30.0)
    source = tmp_path / "south.jpg"
    Image.new("RGB", (64, 48), (10, 20, 200)).save(source, exif=exif)
    _, output = run(tmp_path, "exif", source, tags=["GPSLatitude", "GPSLongitude", "GPSAltitude"])
    assert output["gps_latitude"] == pytest.approx(-33.865, abs=1e-6)
    assert output["gps_longitude"] == pytest.approx(-70.5, abs=1e-6)
    assert output["gps_altitude"] == -12.25
    _, full = run(tmp_path / "all", "exif", source)
    raw = as_dict(full["raw_metadata"])
    assert raw["EXIF:GPSTimeStamp"] == "10:5:30"
    assert (
        raw["Composite:GPSPosition"]
        == f"{raw['Composite:GPSLatitude']} {raw['Composite:GPSLongitude']}"
    )


def test_exif_value_conversion() -> None:
    convert = _plugin_exif.convert_value
    assert convert(TiffImagePlugin.IFDRational(1, 250)) == 0.004
    assert convert(TiffImagePlugin.IFDRational(72, 1)) == 72
    assert convert(TiffImagePlugin.IFDRational(0, 0)) == 0
    assert convert(True) == 1
    assert convert("Canon\x00\x00 ") == "Canon"
    assert convert(b"0232") == "0232"
    assert convert(b"\x01") == 1
    assert convert(b"\x01\x02\x03\x00") == "1 2 3 0"
    assert convert(b"\x01\x02\x03\x04") == "1 2 3 4"
    assert convert(bytes(range(20))) == "(Binary data 20 bytes, use -b option to extract)"
    assert convert((1, 2.5)) == "1 2.5"
    assert convert(None) == "None"
    assert _plugin_exif.gps_degrees((1.0, 2.0)) is None
    assert _plugin_exif.gps_degrees("x") is None
    assert _plugin_exif.gps_degrees((1.0, "2", 3.0)) is None
    assert _plugin_exif.gps_degrees((1.0, 2.0, float("nan"))) is None
    assert _plugin_exif.gps_degrees((TiffImagePlugin.IFDRational(3, 2), 30, 0)) == 2.0
    assert convert(float("inf")) == "undef"


# ----------------------------------------------------------------------------------------- hls


@pytest.mark.slow
def test_hls_streaming(tmp_path: Path, video: Path | None) -> None:
    variants: list[JsonValue] = [
        {"resolution": 144, "bitrate": 200},
        {"resolution": 96, "bitrate": 100},
    ]
    if video is None:  # the missing-ffmpeg path has its own test below
        pytest.fail(FFMPEG_NEEDED)
    job, output = run(tmp_path, "hls_streaming", video, variants=variants, include_original=True)
    master = job.file("output/adaptive.m3u8")
    assert output["master_playlist"] == str(job.job_dir.absolute() / "output" / "adaptive.m3u8")
    assert Path(str(output["master_playlist"])).is_absolute()
    assert (output["variants_generated"], output["include_original"]) == (2, True)
    lines = master.read_text().splitlines()
    assert lines[0] == "#EXTM3U"
    referenced = [line for line in lines if line and not line.startswith("#")]
    assert referenced == ["adaptive-144p-200.m3u8", "adaptive-96p-100.m3u8"]
    segments = 0
    for name in referenced:
        variant = master.parent / name
        assert variant.is_file()
        uris = [u for u in variant.read_text().splitlines() if u and not u.startswith("#")]
        prefix = name.removesuffix(".m3u8")
        assert all(u.startswith(f"{prefix}-") and u.endswith(".ts") for u in uris)
        assert all((master.parent / u).is_file() for u in uris)
        segments += len(uris)
    assert output["total_segments"] == segments >= 2
    assert job.file("output/adaptive-orig.m3u8").is_file()
    assert job.file("output/adaptive-orig-000.ts").is_file()


def test_hls_without_audio_or_ffmpeg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    silent = make_video(tmp_path / "silent.mp4", seconds=1, size=(64, 48), audio=False)
    source = silent if silent is not None else make_text(tmp_path / "silent.mp4")
    variants: list[JsonValue] = [{"resolution": 48, "bitrate": 100}]
    if silent is not None:
        job = make_job(tmp_path, "hls_streaming", source, variants=variants)
        with pytest.raises(RuntimeError, match="matches no streams"):
            _ = TASKS["hls_streaming"](job.ctx)
    monkeypatch.setattr(_plugin_base, "ffmpeg_path", lambda: None)
    job = make_job(tmp_path / "none", "hls_streaming", source, variants=variants)
    with pytest.raises(RuntimeError, match=r"^ffmpeg is required for hls_streaming"):
        _ = TASKS["hls_streaming"](job.ctx)


@pytest.mark.parametrize(
    ("variants", "message"),
    [
        ([], "At least one variant must be specified"),
        ("oops", "At least one variant must be specified"),
        ([1], "invalid variant"),
        ([{"resolution": None, "bitrate": None}], "orignal should be generated using addOriginal"),
        ([{"resolution": 240, "bitrate": None}], "FFmpeg command failed"),
        ([{"resolution": None, "bitrate": 800}], "adaptive-orig.m3u8 is either invalid"),
    ],
)
def test_hls_bad_variants(tmp_path: Path, variants: JsonValue, message: str) -> None:
    job = make_job(tmp_path, "hls_streaming", make_text(tmp_path / "v.mp4"), variants=variants)
    with pytest.raises((ValueError, RuntimeError), match=message):
        _ = TASKS["hls_streaming"](job.ctx)


def test_hls_validation_errors(tmp_path: Path) -> None:
    master = tmp_path / "adaptive.m3u8"
    with pytest.raises(RuntimeError, match="Master playlist not found"):
        _ = _plugin_media_validate(master)
    _ = master.write_text("#EXTM3U\na.m3u8\nb.m3u8\n")
    _ = (tmp_path / "a.m3u8").write_text("#EXTM3U\n#EXTINF:2.0,\na-000.ts\n")
    with pytest.raises(
        RuntimeError,
        match=r"^HLS validation failed: Missing segments in a\.m3u8: 1 of 1, Variant playlist not found: /.*b\.m3u8$",
    ):
        _ = _plugin_media_validate(master)


def _plugin_media_validate(master: Path) -> int:
    from cl_client.testing.compute import _plugin_media

    return _plugin_media.validate_hls(master)


# ------------------------------------------------------------------------------- common helpers


def test_missing_input_and_bad_output_paths(tmp_path: Path, png: Path) -> None:
    job = make_job(tmp_path, "hash", png)
    job.ctx.input_path.unlink()
    with pytest.raises(FileNotFoundError, match=r"^Input file not found: /"):
        _ = TASKS["hash"](job.ctx)
    for output_path in ("../escape.json", ""):
        job = make_job(tmp_path / "out", "hash", png, output_path=output_path)
        with pytest.raises(ValueError, match="output"):
            _ = TASKS["hash"](job.ctx)


def test_param_helpers_ignore_wrong_types() -> None:
    params: dict[str, JsonValue] = {"b": "yes", "f": True, "i": 1.5, "s": 3, "l": "x", "n": 2}
    assert _plugin_base.param_bool(params, "b", True) is True
    assert _plugin_base.param_float(params, "f", 0.5) == 0.5
    assert _plugin_base.param_float(params, "n", 0.5) == 2.0
    assert _plugin_base.param_int_or_none(params, "i") is None
    assert _plugin_base.param_int_or_none(params, "n") == 2
    assert _plugin_base.param_str(params, "s", "d") == "d"
    assert _plugin_base.param_str_list(params, "l") == []
    assert _plugin_base.l2_normalize([0.0, 0.0]) == [0.0, 0.0]


def test_tasks_cover_every_plugin() -> None:
    assert sorted(TASKS) == sorted(PLUGIN_NAMES) == list(PLUGIN_NAMES)


# --------------------------------------------------------------------------------------- routes


@dataclass
class Submitted:
    task_type: str
    filename: str | None
    content: bytes
    params: dict[str, JsonValue]
    priority: int


@dataclass
class Routes:
    client: httpx.AsyncClient
    submitted: list[Submitted]


@pytest.fixture
async def routes() -> AsyncIterator[Routes]:
    submitted: list[Submitted] = []

    async def submit(
        task_type: str, upload: UploadFile, params: dict[str, JsonValue], priority: int
    ) -> dict[str, JsonValue]:
        content = await upload.read()
        submitted.append(Submitted(task_type, upload.filename, content, params, priority))
        return {"job_id": f"job-{len(submitted)}", "status": "queued", "task_type": task_type}

    app = FastAPI()
    app.include_router(plugin_router(submit))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://compute") as client:
        yield Routes(client, submitted)


def response_json(response: httpx.Response) -> JsonValue:
    return JSON.validate_json(response.content)


UPLOAD = {"file": ("photo one.jpg", b"\xff\xd8\xff fake", "image/jpeg")}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("task", "form", "params"),
    [
        ("clip_embedding", {}, {"output_path": "output/clip_embedding.npy", "normalize": True}),
        (
            "dino_embedding",
            {"normalize": "off"},
            {"output_path": "output/dino_embedding.npy", "normalize": False},
        ),
        (
            "face_embedding",
            {"normalize": "0"},
            {"output_path": "output/face_embedding.npy", "normalize": False},
        ),
        ("exif", {}, {"output_path": "output/exif_metadata.json", "tags": []}),
        (
            "exif",
            {"tags": " Make, Model,,ISO "},
            {"output_path": "output/exif_metadata.json", "tags": ["Make", "Model", "ISO"]},
        ),
        (
            "face_detection",
            {},
            {
                "output_path": "output/face_detection.json",
                "confidence_threshold": 0.7,
                "nms_threshold": 0.4,
            },
        ),
        (
            "face_detection",
            {"confidence_threshold": "0.5", "nms_threshold": "1"},
            {
                "output_path": "output/face_detection.json",
                "confidence_threshold": 0.5,
                "nms_threshold": 1.0,
            },
        ),
        ("hash", {}, {"output_path": "output/hash.json", "algorithm": "sha512"}),
        ("hash", {"algorithm": "md5"}, {"output_path": "output/hash.json", "algorithm": "md5"}),
        (
            "hls_streaming",
            {},
            {
                "output_path": "output",
                "variants": [
                    {"resolution": 720, "bitrate": 3500},
                    {"resolution": 480, "bitrate": 1500},
                ],
                "include_original": False,
            },
        ),
        (
            "hls_streaming",
            {
                "variants": '[{"resolution":"240","bitrate":800,"x":1},{"bitrate":400}]',
                "include_original": "yes",
            },
            {
                "output_path": "output",
                "variants": [
                    {"resolution": 240, "bitrate": 800},
                    {"resolution": None, "bitrate": 400},
                ],
                "include_original": True,
            },
        ),
        (
            "image_conversion",
            {"format": "jpeg"},
            {"output_path": "output/converted_photo one.jpg", "format": "jpeg", "quality": 85},
        ),
        (
            "image_conversion",
            {"format": "webp", "quality": "40"},
            {"output_path": "output/converted_photo one.webp", "format": "webp", "quality": 40},
        ),
        (
            "media_thumbnail",
            {},
            {
                "output_path": "output/thumbnail.jpg",
                "width": None,
                "height": None,
                "maintain_aspect_ratio": True,
            },
        ),
        (
            "media_thumbnail",
            {"width": "256", "height": "", "maintain_aspect_ratio": "false"},
            {
                "output_path": "output/thumbnail.jpg",
                "width": 256,
                "height": None,
                "maintain_aspect_ratio": False,
            },
        ),
    ],
)
async def test_routes_store_params(
    routes: Routes, task: str, form: dict[str, str], params: dict[str, JsonValue]
) -> None:
    response = await routes.client.post(
        f"/jobs/{task}", data={**form, "priority": "7"}, files=UPLOAD
    )
    assert response.status_code == 200
    assert response_json(response) == {"job_id": "job-1", "status": "queued", "task_type": task}
    [got] = routes.submitted
    assert (got.task_type, got.filename, got.content, got.priority) == (
        task,
        "photo one.jpg",
        b"\xff\xd8\xff fake",
        7,
    )
    assert got.params == params
    assert list(got.params) == list(params)


@pytest.mark.slow
@pytest.mark.parametrize("task", PLUGIN_NAMES)
async def test_routes_require_file_and_default_priority(routes: Routes, task: str) -> None:
    response = await routes.client.post(f"/jobs/{task}", data={"format": "png"})
    assert response.status_code == 422
    assert response_json(response) == {
        "detail": [
            {"type": "missing", "loc": ["body", "file"], "msg": "Field required", "input": None}
        ]
    }
    response = await routes.client.post(f"/jobs/{task}", data={"format": "png"}, files=UPLOAD)
    assert response.status_code == 200
    assert routes.submitted[0].priority == 5


@pytest.mark.slow
@pytest.mark.parametrize(
    ("task", "form", "error"),
    [
        (
            "hash",
            {"algorithm": "sha1"},
            {
                "type": "literal_error",
                "loc": ["body", "algorithm"],
                "msg": "Input should be 'sha512' or 'md5'",
                "input": "sha1",
                "ctx": {"expected": "'sha512' or 'md5'"},
            },
        ),
        (
            "hash",
            {"priority": "11"},
            {
                "type": "less_than_equal",
                "loc": ["body", "priority"],
                "msg": "Input should be less than or equal to 10",
                "input": "11",
                "ctx": {"le": 10},
            },
        ),
        (
            "clip_embedding",
            {"priority": "-1"},
            {
                "type": "greater_than_equal",
                "loc": ["body", "priority"],
                "msg": "Input should be greater than or equal to 0",
                "input": "-1",
                "ctx": {"ge": 0},
            },
        ),
        (
            "image_conversion",
            {},
            {"type": "missing", "loc": ["body", "format"], "msg": "Field required", "input": None},
        ),
        (
            "image_conversion",
            {"format": "png", "quality": "0"},
            {
                "type": "greater_than_equal",
                "loc": ["body", "quality"],
                "msg": "Input should be greater than or equal to 1",
                "input": "0",
                "ctx": {"ge": 1},
            },
        ),
        (
            "media_thumbnail",
            {"width": "0"},
            {
                "type": "greater_than",
                "loc": ["body", "width"],
                "msg": "Input should be greater than 0",
                "input": "0",
                "ctx": {"gt": 0},
            },
        ),
        (
            "face_detection",
            {"confidence_threshold": "1.5"},
            {
                "type": "less_than_equal",
                "loc": ["body", "confidence_threshold"],
                "msg": "Input should be less than or equal to 1",
                "input": "1.5",
                "ctx": {"le": 1.0},
            },
        ),
        (
            "dino_embedding",
            {"normalize": "maybe"},
            {
                "type": "bool_parsing",
                "loc": ["body", "normalize"],
                "msg": "Input should be a valid boolean, unable to interpret input",
                "input": "maybe",
            },
        ),
    ],
)
async def test_routes_validation_errors(
    routes: Routes, task: str, form: dict[str, str], error: dict[str, JsonValue]
) -> None:
    response = await routes.client.post(f"/jobs/{task}", data=form, files=UPLOAD)
    assert response.status_code == 422
    assert response_json(response) == {"detail": [error]}
    assert routes.submitted == []


@pytest.mark.slow
@pytest.mark.parametrize(
    "variants",
    [
        "not json",
        "[]",
        "{}",
        '{"resolution": 720}',
        "[1]",
        "null",
        '[{"resolution": 720, "bitrate": 50}]',
        '[{"resolution": 720.5}]',
    ],
)
async def test_hls_bad_variants_are_plain_500(routes: Routes, variants: str) -> None:
    response = await routes.client.post(
        "/jobs/hls_streaming", data={"variants": variants}, files=UPLOAD
    )
    assert response.status_code == 500
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.text == "Internal Server Error"
    assert routes.submitted == []


@pytest.mark.slow
@pytest.mark.parametrize("task", PLUGIN_NAMES)
async def test_empty_filename_is_plain_500(routes: Routes, task: str) -> None:
    body = (
        b'--XyZ\r\nContent-Disposition: form-data; name="format"\r\n\r\npng\r\n'
        b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename=""\r\n'
        b"Content-Type: application/octet-stream\r\n\r\ndata\r\n--XyZ--\r\n"
    )
    response = await routes.client.post(
        f"/jobs/{task}", content=body, headers={"content-type": "multipart/form-data; boundary=XyZ"}
    )
    assert response.status_code == 500
    assert response.text == "Internal Server Error"
    assert routes.submitted == []


async def test_router_paths_and_json_body(routes: Routes) -> None:
    app = FastAPI()
    app.include_router(plugin_router(_never))
    paths = set(as_dict(as_dict(JSON.validate_python(app.openapi()))["paths"]))
    assert paths == {f"/jobs/{name}" for name in PLUGIN_NAMES}
    response = await routes.client.post("/jobs/hash", json={"file": "x"})
    assert response.status_code == 422
    assert json.loads(response.text)["detail"][0]["loc"] == ["body", "file"]


async def _never(
    task_type: str, upload: UploadFile, params: dict[str, JsonValue], priority: int
) -> dict[str, JsonValue]:
    raise AssertionError((task_type, upload, params, priority))
