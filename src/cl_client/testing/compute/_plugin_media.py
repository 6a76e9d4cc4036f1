"""Real media plugins of the local compute service: hash, media_thumbnail, image_conversion,
hls_streaming (docs/plugins.md). They produce real outputs with Pillow and ffmpeg.

Where this differs from the real server, on purpose:

* media types come from a built-in signature sniffer that matches libmagic for common formats;
* ``hash`` with sha512 on a video is EMULATED: the real server hashes the I-frame packets found by
  ffprobe (and fails on Debian bookworm's ffprobe); here it is sha512 of the file bytes, still
  reported as ``sha512_video``;
* ``media_thumbnail`` on a video works (the real server always fails: it passes the relative input
  path to ffmpeg). It runs the real server's ffmpeg tile command on the resolved path, so ffmpeg is
  required; images with alpha or a palette are flattened to RGB before the JPEG is written;
* ``hls_streaming`` uses the real server's ffmpeg layout (var_stream_map, 2 s segments, keyint 60)
  with ``-preset ultrafast`` added for speed. Like the real server it maps the audio stream
  for every variant, so a video without audio fails (``Stream map '0:a' matches no streams``).
"""

from __future__ import annotations

import hashlib
import io
import time
from pathlib import Path

from PIL import Image
from pydantic import JsonValue

from ._plugin_base import (
    FFMPEG_MISSING,
    TaskContext,
    ffmpeg_path,
    media_type_from_mime,
    output_file,
    param_bool,
    param_int_or_none,
    param_str,
    read_input,
    run_ffmpeg,
    sniff_mime,
    write_json,
)

__all__ = [
    "hash_task",
    "hls_streaming_task",
    "image_conversion_task",
    "media_thumbnail_task",
    "thumbnail_size",
    "validate_hls",
]

DEFAULT_THUMBNAIL_SIZE = 256

_PIL_FORMATS = {
    "jpg": "JPEG",
    "jpeg": "JPEG",
    "png": "PNG",
    "webp": "WEBP",
    "gif": "GIF",
    "bmp": "BMP",
    "tiff": "TIFF",
}


# ------------------------------------------------------------------------------------------ hash


def hash_task(ctx: TaskContext) -> dict[str, JsonValue]:
    """md5 of the bytes; sha512 of decoded pixels (images), of the bytes (others).

    Writes ``output/hash.json`` = ``{"hash_value", "algorithm", "media_type", "process_time"}``
    and returns ``{"media_type": ...}``.
    """
    data = read_input(ctx)
    media_type = media_type_from_mime(sniff_mime(data), data)
    algorithm = param_str(ctx.params, "algorithm", "sha512")
    start = time.time()
    if algorithm == "md5":
        hash_value, used = hashlib.md5(data).hexdigest(), "md5"
    elif media_type == "image":
        with Image.open(io.BytesIO(data)) as img:
            img.seek(0)
            hash_value = hashlib.sha512(img.tobytes()).hexdigest()
        used = "sha512_image"
    elif media_type == "video":
        hash_value, used = hashlib.sha512(data).hexdigest(), "sha512_video"  # EMULATED
    else:
        hash_value, used = hashlib.sha512(data).hexdigest(), "sha512_generic"
    payload: dict[str, JsonValue] = {
        "hash_value": hash_value,
        "algorithm": used,
        "media_type": media_type,
        "process_time": time.time() - start,
    }
    write_json(output_file(ctx), payload)
    ctx.progress(100)
    return {"media_type": media_type}


# ------------------------------------------------------------------------------------ thumbnail


def thumbnail_size(
    original: tuple[int, int], width: int | None, height: int | None, keep_aspect: bool
) -> tuple[int, int]:
    """The real server's thumbnail size (docs/plugins.md#media_thumbnail).

    Both sizes with keep-aspect: fitted inside the box (1920x1080 in 256x256 -> 256x144); both
    without: exact; one size: the other follows the aspect ratio (or equals it without
    keep-aspect); neither: 256x256.
    """
    ow, oh = original
    if width is None and height is None:
        return DEFAULT_THUMBNAIL_SIZE, DEFAULT_THUMBNAIL_SIZE
    if width is None:
        assert height is not None
        return (max(1, int(height * ow / oh)) if keep_aspect else height), height
    if height is None:
        return width, (max(1, int(width * oh / ow)) if keep_aspect else width)
    if not keep_aspect:
        return width, height
    scale = min(width / ow, height / oh)
    return max(1, round(ow * scale)), max(1, round(oh * scale))


def _video_thumbnail(source: Path, target: Path, width: int | None, height: int | None) -> None:
    """The real server's ffmpeg command: a 4x4 tile of keyframes, fitted inside the box."""
    if width is None and height is None:
        width = height = DEFAULT_THUMBNAIL_SIZE
    if width is not None and height is not None:
        scale = f"scale='min(iw,{width})':'min(ih,{height})':force_original_aspect_ratio=decrease"
    elif width is not None:
        scale = f"scale={width}:-1"
    else:
        scale = f"scale=-1:{height}"
    _ = run_ffmpeg(
        [
            *("-loglevel", "error", "-y", "-skip_frame", "nokey", "-i", str(source)),
            *("-frames", "1", "-q:v", "1", "-update", "1"),
            *("-vf", f"tile=4x4,loop=16:1,{scale}", "-f", "image2", str(target)),
        ],
        what="video thumbnails",
    )


def media_thumbnail_task(ctx: TaskContext) -> dict[str, JsonValue]:
    """Write ``output/thumbnail.jpg`` for an image (Pillow) or a video (ffmpeg)."""
    data = read_input(ctx)
    mime = sniff_mime(data)
    media_type = media_type_from_mime(mime, data)
    media_type = "text" if media_type == "url" else media_type  # determine_mime has no "url"
    width = param_int_or_none(ctx.params, "width")
    height = param_int_or_none(ctx.params, "height")
    keep_aspect = param_bool(ctx.params, "maintain_aspect_ratio", True)
    if width is not None and width <= 0:
        raise ValueError(f"Width must be positive, got {width}")
    if height is not None and height <= 0:
        raise ValueError(f"Height must be positive, got {height}")
    target = output_file(ctx)
    if media_type == "image":
        with Image.open(ctx.input_path) as img:
            size = thumbnail_size(img.size, width, height, keep_aspect)
            thumb = img.resize(size, Image.Resampling.LANCZOS)
        if thumb.mode not in ("RGB", "L"):
            thumb = thumb.convert("RGB")
        thumb.save(target, format="JPEG")
    elif media_type == "video":
        _video_thumbnail(ctx.input_path, target, width, height)
    else:
        raise RuntimeError(
            f"Unsupported media type: {media_type}. Only image and video are supported."
        )
    ctx.progress(100)
    return {"media_type": media_type}


# ----------------------------------------------------------------------------- image conversion


def image_conversion_task(ctx: TaskContext) -> dict[str, JsonValue]:
    """Convert with Pillow to ``params.output_path`` (``output/converted_<stem>.<ext>``).

    RGBA and P images become RGB for JPEG; ``quality`` applies to jpg and webp; png is optimised.
    """
    _ = read_input(ctx)
    fmt = param_str(ctx.params, "format", "png").lower()
    quality = param_int_or_none(ctx.params, "quality")
    target = output_file(ctx)
    with Image.open(ctx.input_path) as opened:
        img: Image.Image = opened
        if fmt in ("jpg", "jpeg") and img.mode in ("RGBA", "P"):
            img = img.convert("RGB")
        if fmt in ("jpg", "jpeg", "webp") and quality is not None:
            img.save(target, format=_PIL_FORMATS.get(fmt, fmt.upper()), quality=quality)
        elif fmt == "png":
            img.save(target, format="PNG", optimize=True)
        else:
            img.save(target, format=_PIL_FORMATS.get(fmt, fmt.upper()))
    ctx.progress(100)
    return {}


# -------------------------------------------------------------------------------- hls_streaming


def _variants(ctx: TaskContext) -> list[tuple[int, int]]:
    raw = ctx.params.get("variants")
    if not isinstance(raw, list) or not raw:
        raise ValueError("At least one variant must be specified")
    result: list[tuple[int, int]] = []
    for item in raw:
        if not isinstance(item, dict):
            raise ValueError("invalid variant")
        resolution, bitrate = item.get("resolution"), item.get("bitrate")
        if resolution is None and bitrate is None:
            raise RuntimeError("orignal should be generated using addOriginal")
        if not isinstance(bitrate, int) or isinstance(bitrate, bool):
            raise RuntimeError("FFmpeg command failed: a variant has no bitrate")
        if not isinstance(resolution, int) or isinstance(resolution, bool):
            raise RuntimeError(
                "the stream generated adaptive-orig.m3u8 is either invalid or partial or corrupted"
            )
        result.append((resolution, bitrate))
    return result


def _variant_command(source: Path, out_dir: Path, variants: list[tuple[int, int]]) -> list[str]:
    """The real server's single ffmpeg run for all variants (audio is mapped for every variant,
    so an input without an audio stream fails, as on the real server)."""
    names = [f"{h}p-{kbps}" for h, kbps in variants]
    split = "".join(f"[{n}_in]" for n in names)
    scales = ";".join(
        f"[{n}_in]scale=-2:{h}[{n}_out]" for n, (h, _) in zip(names, variants, strict=True)
    )
    args = ["-loglevel", "error", "-y", "-i", str(source)]
    args += ["-filter_complex", f"[0:v]split={len(variants)}{split};{scales}"]
    for n in names:
        args += ["-map", f"[{n}_out]"]
    for _ in names:
        args += ["-map", "0:a"]
    for i, (_, kbps) in enumerate(variants):
        rate = f"{kbps}k"
        args += [f"-b:v:{i}", rate, f"-maxrate:v:{i}", rate, f"-bufsize:v:{i}", rate]
    for i in range(len(variants)):
        args += [f"-b:a:{i}", "128k"]
    stream_map = " ".join(f"v:{i},a:{i},name:{n}" for i, n in enumerate(names))
    args += ["-preset", "ultrafast", "-x264-params", "keyint=60:min-keyint=60:scenecut=0"]
    args += ["-var_stream_map", stream_map, "-hls_list_size", "0", "-hls_time", "2"]
    args += ["-hls_segment_filename", f"{out_dir}/adaptive-%v-%03d.ts"]
    args += ["-master_pl_name", "adaptive.m3u8", f"{out_dir}/adaptive-%v.m3u8"]
    return args


def _uris(playlist: Path) -> list[str]:
    lines = playlist.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def validate_hls(master: Path) -> int:
    """The real HLSValidator: every variant and segment exists; returns the segment count."""
    if not master.is_file():
        raise RuntimeError(f"HLS validation failed: Master playlist not found: {master}")
    total = 0
    errors: list[str] = []
    for uri in _uris(master):
        variant = master.parent / uri
        if not variant.is_file():
            errors.append(f"Variant playlist not found: {variant}")
            continue
        segments = _uris(variant)
        total += len(segments)
        missing = [s for s in segments if not (master.parent / s).is_file()]
        if missing:
            errors.append(f"Missing segments in {uri}: {len(missing)} of {len(segments)}")
    if errors:
        raise RuntimeError("HLS validation failed: " + ", ".join(errors))
    return total


def hls_streaming_task(ctx: TaskContext) -> dict[str, JsonValue]:
    """Adaptive HLS with ffmpeg: ``output/adaptive.m3u8`` plus one playlist per variant.

    task_output ``master_playlist`` is the ABSOLUTE path of the master playlist, as on the real
    server; ``total_segments`` counts the variants' segments (not the ``orig`` ones).
    """
    _ = read_input(ctx)
    variants = _variants(ctx)
    include_original = param_bool(ctx.params, "include_original", False)
    master = output_file(ctx, f"{param_str(ctx.params, 'output_path', 'output')}/adaptive.m3u8")
    out_dir = master.parent
    if ffmpeg_path() is None:
        raise RuntimeError(f"ffmpeg is required for hls_streaming but {FFMPEG_MISSING}")
    source = ctx.input_path.resolve()
    _ = run_ffmpeg(_variant_command(source, out_dir, variants), what="hls_streaming")
    ctx.progress(1)  # the manifest is ready (cl_ml_tools HEAD reports 1 here)
    if include_original:
        _ = run_ffmpeg(
            [
                *("-loglevel", "error", "-y", "-i", str(source), "-c", "copy", "-f", "hls"),
                *("-hls_time", "2", "-hls_segment_filename", f"{out_dir}/adaptive-orig-%03d.ts"),
                f"{out_dir}/adaptive-orig.m3u8",
            ],
            what="hls_streaming",
        )
    total = validate_hls(master)
    ctx.progress(100)
    return {
        "master_playlist": str(master),
        "variants_generated": len(variants),
        "total_segments": total,
        "include_original": include_original,
    }
