"""Every plugin command end to end against the local compute service, in-process: one input
(checked against the library's typed result for the same file) and many inputs (names,
NDJSON, files on disk)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import cast

import pytest
from PIL import Image

from cl_client import ComputeClient
from cl_client.plugins import HlsVariant, parse_npy
from cl_client.testing import LocalComputeService
from tests.cli_util import CliResult, cli, service_args
from tests.media import make_face_jpeg, make_jpeg, make_png, make_video


def _result(record: dict[str, object]) -> dict[str, object]:
    value = record["result"]
    assert isinstance(value, dict)
    return cast(dict[str, object], value)


def _outputs(record: dict[str, object]) -> list[Path]:
    value = record["outputs"]
    assert isinstance(value, list)
    return [Path(cast(str, p)) for p in cast(list[object], value)]


def _ok(result: CliResult) -> dict[str, object]:
    assert result.code == 0, result
    record = result.record()
    assert record["status"] == "completed", result
    assert record["error"] is None
    return record


async def _plugin(
    svc: LocalComputeService, *args: str | Path
) -> tuple[CliResult, dict[str, object]]:
    result = await cli(*service_args(svc), "--json", *args)
    return result, _ok(result)


def _assert_deleted(svc: LocalComputeService, record: dict[str, object]) -> None:
    job_id = record["job_id"]
    assert isinstance(job_id, str)
    with pytest.raises(KeyError):
        svc.job(job_id)


# ----------------------------------------------------------------------------- one input


@pytest.mark.slow
async def test_hash_one_input(local_compute: LocalComputeService, tmp_path: Path) -> None:
    image = make_jpeg(tmp_path / "in" / "photo.jpg", (96, 64))
    _, record = await _plugin(
        local_compute, "hash", "compute", image, "-a", "md5", "-o", tmp_path / "digest.json"
    )
    async with ComputeClient(local_compute.settings()) as client:
        expected = await client.hash.run(image, algorithm="md5", delete_job=True)
    assert _result(record) == {
        "hash_value": expected.hash_value,
        "algorithm": expected.algorithm,
        "media_type": expected.media_type,
        "process_time": _result(record)["process_time"],
    }
    assert _outputs(record) == [tmp_path / "digest.json"]
    saved = cast(dict[str, object], json.loads((tmp_path / "digest.json").read_text()))
    assert saved["hash_value"] == expected.hash_value
    assert record["input"] == str(image) and record["task_type"] == "hash"
    _assert_deleted(local_compute, record)


@pytest.mark.slow
async def test_exif_one_input(local_compute: LocalComputeService, tmp_path: Path) -> None:
    image = make_jpeg(tmp_path / "photo.jpg", (96, 64))
    result, record = await _plugin(
        local_compute, "exif", "extract", image, "--tags", "Make,Model", "-t", "ISO"
    )
    async with ComputeClient(local_compute.settings()) as client:
        expected = await client.exif.run(image, tags=["Make", "Model", "ISO"], delete_job=True)
    metadata = cast(dict[str, dict[str, object]], _result(record)["metadata"])
    wanted = expected.metadata.model_dump(mode="json", exclude_none=True)
    # SourceFile names the job's own upload directory on the server
    for fields in (metadata, wanted):
        del fields["raw_metadata"]["SourceFile"]
    assert metadata == wanted
    assert _outputs(record) == []  # nothing saved without --output
    assert "no --output" not in result.stderr  # the result is the metadata itself


@pytest.mark.slow
@pytest.mark.parametrize(
    ("group", "dim", "suffix"),
    [("clip_embedding", 512, "clip"), ("dino-embedding", 384, "dino")],
)
async def test_image_embedding_one_input(
    local_compute: LocalComputeService, tmp_path: Path, group: str, dim: int, suffix: str
) -> None:
    image = make_jpeg(tmp_path / "photo.jpg", (96, 64))
    target = tmp_path / f"vector.{suffix}.npy"
    _, record = await _plugin(local_compute, group, "embed", image, "--vector", "-o", target)
    async with ComputeClient(local_compute.settings()) as client:
        plugin = client.clip_embedding if suffix == "clip" else client.dino_embedding
        expected = await plugin.run(image, numpy=False, delete_job=True)
    fields = _result(record)
    assert fields["dim"] == expected.dim == dim
    assert fields["normalized"] is True
    assert fields["vector"] == pytest.approx(expected.tolist())
    assert fields["norm"] == pytest.approx(1.0, abs=1e-5)
    assert parse_npy(target.read_bytes()).tolist() == pytest.approx(expected.tolist())


@pytest.mark.slow
async def test_face_embedding_one_input(local_compute: LocalComputeService, tmp_path: Path) -> None:
    face = make_face_jpeg(tmp_path / "face.jpg", 1, (112, 112))
    _, record = await _plugin(local_compute, "face_embedding", "embed", face, "--no-normalize")
    async with ComputeClient(local_compute.settings()) as client:
        expected = await client.face_embedding.run(face, normalize=False, delete_job=True)
    fields = _result(record)
    assert fields["dim"] == 512 and fields["normalized"] is False
    assert fields["quality_score"] == expected.quality_score
    norm = math.sqrt(math.fsum(v * v for v in expected.tolist()))
    assert fields["norm"] == pytest.approx(norm, rel=1e-5)
    assert "vector" not in fields


@pytest.mark.slow
async def test_face_detection_one_input(local_compute: LocalComputeService, tmp_path: Path) -> None:
    image = make_face_jpeg(tmp_path / "group.jpg", 2, (320, 160))
    target = tmp_path / "out" / "faces.json"
    _, record = await _plugin(
        local_compute,
        "face_detection",
        "detect",
        image,
        "--confidence-threshold",
        "0.5",
        "-o",
        target,
    )
    async with ComputeClient(local_compute.settings()) as client:
        expected = await client.face_detection.run(image, confidence_threshold=0.5, delete_job=True)
    fields = _result(record)
    assert fields["num_faces"] == expected.num_faces == 2
    assert fields["faces"] == [face.model_dump(mode="json") for face in expected.faces]
    assert (fields["image_width"], fields["image_height"]) == (320, 160)
    crops = sorted((tmp_path / "out" / "faces").iterdir())
    assert [c.name for c in crops] == ["face_0.png", "face_1.png"]
    assert _outputs(record) == [target, *crops]
    assert cast(dict[str, object], json.loads(target.read_text()))["num_faces"] == 2
    for crop in crops:
        with Image.open(crop) as img:
            assert img.format == "PNG"


@pytest.mark.slow
async def test_media_thumbnail_one_input(
    local_compute: LocalComputeService, tmp_path: Path
) -> None:
    image = make_jpeg(tmp_path / "wide.jpg", (320, 180))
    target = tmp_path / "thumb.jpg"
    _, record = await _plugin(
        local_compute, "media-thumbnail", "generate", image, "-W", "64", "-H", "64", "-o", target
    )
    assert _outputs(record) == [target]
    with Image.open(target) as img:
        assert img.format == "JPEG" and img.size == (64, 36)
    assert _result(record) == {"media_type": "image", "bytes": target.stat().st_size}


@pytest.mark.slow
async def test_image_conversion_one_input(
    local_compute: LocalComputeService, tmp_path: Path
) -> None:
    image = make_png(tmp_path / "pic.png", (80, 60))
    target = tmp_path / "converted.webp"
    _, record = await _plugin(
        local_compute,
        "image_conversion",
        "convert",
        image,
        "-f",
        "WEBP",
        "--quality",
        "70",
        "-o",
        target,
    )
    with Image.open(target) as img:
        assert img.format == "WEBP" and img.size == (80, 60)
    assert _result(record) == {"format": "webp", "bytes": target.stat().st_size}


def _playlist_uris(path: Path) -> list[str]:
    return [
        line.strip()
        for line in path.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]


def _assert_bundle(directory: Path) -> list[Path]:
    """Every file the master playlist references (directly or through a variant) exists."""
    master = directory / "adaptive.m3u8"
    files = [master]
    for uri in _playlist_uris(master):
        playlist = directory / uri
        assert playlist.is_file(), uri
        files.append(playlist)
        for segment in _playlist_uris(playlist):
            assert (playlist.parent / segment).stat().st_size > 0, segment
            files.append(playlist.parent / segment)
    return files


@pytest.mark.slow
async def test_hls_streaming_one_input(local_compute: LocalComputeService, tmp_path: Path) -> None:
    video = make_video(tmp_path / "clip.mp4", seconds=1, size=(160, 120))
    assert video is not None, "ffmpeg is needed for the test video"
    bundle = tmp_path / "stream"
    _, record = await _plugin(
        local_compute,
        "hls_streaming",
        "generate_manifest",
        video,
        "--variant",
        "120:300",
        "--variant",
        "96p:200k",
        "-o",
        bundle,
    )
    files = _assert_bundle(bundle)
    assert len(files) >= 5  # master, two variant playlists, their segments
    assert sorted(_outputs(record)) == sorted(files)
    assert _result(record)["variants_generated"] == 2
    async with ComputeClient(local_compute.settings()) as client:
        expected = await client.hls_streaming.run(
            video,
            tmp_path / "library",
            variants=[HlsVariant(120, 300), HlsVariant(96, 200)],
            delete_job=True,
        )
    assert sorted(p.name for p in files) == sorted(p.name for p in expected.files)


# --------------------------------------------------------------------------- many inputs

Make = Callable[[Path], Path | None]

_IMAGE: Make = lambda p: make_jpeg(p.with_suffix(".jpg"), (64, 48))  # noqa: E731
_FACE: Make = lambda p: make_face_jpeg(p.with_suffix(".jpg"), 1, (96, 96))  # noqa: E731
_VIDEO: Make = lambda p: make_video(p.with_suffix(".mp4"), seconds=1, size=(96, 64))  # noqa: E731

MANY: list[tuple[list[str], Make, Callable[[str], str]]] = [
    (["hash", "compute"], _IMAGE, lambda s: f"{s}.hash.json"),
    (["exif", "extract"], _IMAGE, lambda s: f"{s}.exif.json"),
    (["clip_embedding", "embed"], _IMAGE, lambda s: f"{s}.clip.npy"),
    (["dino_embedding", "embed"], _IMAGE, lambda s: f"{s}.dino.npy"),
    (["face_embedding", "embed"], _FACE, lambda s: f"{s}.face.npy"),
    (["face_detection", "detect"], _FACE, lambda s: f"{s}.faces.json"),
    (["media_thumbnail", "generate", "-W", "32"], _IMAGE, lambda s: f"{s}.thumb.jpg"),
    (["image_conversion", "convert", "-f", "png"], _IMAGE, lambda s: f"{s}.png"),
    (
        ["hls_streaming", "generate-manifest", "--variant", "64:200"],
        _VIDEO,
        lambda s: f"{s}/adaptive.m3u8",
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize(("command", "make", "name"), MANY, ids=[m[0][0] for m in MANY])
async def test_every_plugin_on_many_inputs(
    local_compute: LocalComputeService,
    tmp_path: Path,
    command: list[str],
    make: Make,
    name: Callable[[str], str],
) -> None:
    src = tmp_path / "in"
    inputs = [make(src / "a"), make(src / "b"), make(src / "sub" / "c")]
    assert all(p is not None for p in inputs)
    (src / ".hidden.jpg").write_bytes(b"not an image")  # hidden files are skipped
    (src / "notes.txt").write_text("skipped by --glob")
    suffix = cast(Path, inputs[0]).suffix
    out = tmp_path / "out"
    result = await cli(
        *service_args(local_compute),
        "--json",
        *command,
        src,
        "-r",
        "--glob",
        f"*{suffix}",
        "-o",
        out,
        "-j",
        "2",
    )
    assert result.code == 0, result
    records = result.records()
    assert sorted(cast(str, r["input"]) for r in records) == sorted(str(p) for p in inputs)
    assert all(r["status"] == "completed" for r in records), result
    expected = {out / name("a"), out / name("b"), out / "sub" / name("c")}
    for record in records:
        primary = _outputs(record)[0]
        assert primary in expected
        assert primary.stat().st_size > 0
    assert not list(out.rglob(".*")), "no staging directory is left behind"
    assert "3 input(s): 3 completed" in result.stderr
    assert not local_compute.state.jobs, "every job was deleted"
