"""Shared pieces of the local compute service's plugin tasks.

``TaskContext`` is what the job machinery hands to a task function; the helpers here read
parameters, place output files, sniff media types the way libmagic does for the common formats,
write ``.npy`` files without numpy and run ffmpeg.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import struct
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import JsonValue

__all__ = [
    "FFMPEG_MISSING",
    "TaskContext",
    "TaskFn",
    "emulated_unit_floats",
    "ffmpeg_path",
    "l2_normalize",
    "media_type_from_mime",
    "output_file",
    "param_bool",
    "param_float",
    "param_int_or_none",
    "param_str",
    "param_str_list",
    "read_input",
    "run_ffmpeg",
    "sniff_mime",
    "write_json",
    "write_npy_f4",
]


@dataclass(frozen=True)
class TaskContext:
    """Everything a plugin task needs: it runs synchronously in a worker thread.

    ``job_dir`` holds ``input/`` and ``output/``; ``input_path`` is the absolute path of the upload;
    ``params`` are the stored job params (``input_path``/``output_path`` relative to ``job_dir``
    plus the plugin's parameters); ``progress`` reports a percentage (the machinery decides what is
    stored or published).
    """

    job_dir: Path
    input_path: Path
    params: dict[str, JsonValue]
    progress: Callable[[int], None]


TaskFn = Callable[[TaskContext], dict[str, JsonValue]]
"""A plugin task: returns the ``task_output``; an exception's message becomes ``error_message``."""


# --------------------------------------------------------------------------------------- params


def param_bool(params: dict[str, JsonValue], name: str, default: bool) -> bool:
    value = params.get(name, default)
    return value if isinstance(value, bool) else default


def param_float(params: dict[str, JsonValue], name: str, default: float) -> float:
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    return float(value)


def param_int_or_none(params: dict[str, JsonValue], name: str) -> int | None:
    value = params.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def param_str(params: dict[str, JsonValue], name: str, default: str) -> str:
    value = params.get(name, default)
    return value if isinstance(value, str) else default


def param_str_list(params: dict[str, JsonValue], name: str) -> list[str]:
    value = params.get(name)
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, str)]


# ---------------------------------------------------------------------------------------- files


def read_input(ctx: TaskContext) -> bytes:
    """The upload's bytes; a missing input fails like the real tasks do."""
    if not ctx.input_path.is_file():
        raise FileNotFoundError(f"Input file not found: {ctx.input_path}")
    return ctx.input_path.read_bytes()


def output_file(ctx: TaskContext, relative: str | None = None) -> Path:
    """Absolute path of ``relative`` (default ``params.output_path``), parent directory created."""
    rel = relative if relative is not None else param_str(ctx.params, "output_path", "")
    if not rel:
        raise ValueError("output_path is missing from the job params")
    job_dir = ctx.job_dir.absolute()
    path = Path(os.path.normpath(job_dir / rel))
    if not path.resolve().is_relative_to(job_dir.resolve()):
        raise ValueError(f"output path escapes the job directory: {rel}")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def write_json(path: Path, payload: JsonValue) -> None:
    """Write JSON like the real tasks (``json.dump(..., indent=2)``)."""
    with path.open("w", encoding="utf-8") as fh:
        json.dump(payload, fh, indent=2)


def write_npy_f4(path: Path, values: Sequence[float]) -> None:
    """Write a 1-D little-endian float32 array as an ``.npy`` v1.0 file, byte-identical to
    ``numpy.save`` (header padded with spaces to a multiple of 64 bytes, ending in a newline)."""
    header = f"{{'descr': '<f4', 'fortran_order': False, 'shape': ({len(values)},), }}"
    prefix_len = 6 + 2 + 2  # magic, version, header length
    pad = 64 - (prefix_len + len(header) + 1) % 64
    header_bytes = (header + " " * (pad % 64) + "\n").encode("latin1")
    data = b"".join(struct.pack("<f", v) for v in values)
    path.write_bytes(
        b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header_bytes)) + header_bytes + data
    )


def emulated_unit_floats(data: bytes, salt: str, count: int) -> list[float]:
    """``count`` deterministic pseudo-random floats in [-1, 1) derived from sha256(salt + data).

    This is the basis of the EMULATED model outputs (no model weights can be used here).
    """
    seed = hashlib.sha256(salt.encode() + b"\x00" + data).digest()
    out: list[float] = []
    counter = 0
    while len(out) < count:
        block = hashlib.sha256(seed + counter.to_bytes(4, "little")).digest()
        counter += 1
        for offset in range(0, len(block), 4):
            word = int.from_bytes(block[offset : offset + 4], "little")
            out.append(word / 2147483648.0 - 1.0)
    return out[:count]


def l2_normalize(values: Sequence[float]) -> list[float]:
    norm = math.sqrt(math.fsum(v * v for v in values))
    return [v / norm for v in values] if norm > 0 else list(values)


# ---------------------------------------------------------------------------------- media types


def _ftyp_mime(data: bytes) -> str:
    brand = data[8:12]
    compatible = data[8:32]
    if brand in (b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1"):
        return "image/heic"
    if brand in (b"avif", b"avis"):
        return "image/avif"
    if brand in (b"M4A ", b"M4B ", b"M4P ") or (brand == b"mp42" and b"M4A " in compatible):
        return "audio/x-m4a"
    if brand == b"qt  ":
        return "video/quicktime"
    if brand.startswith(b"3g"):
        return "video/3gpp"
    return "video/mp4"


def _is_text(data: bytes) -> bool:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(ch >= " " or ch in "\t\n\r\f\b\x1b" for ch in text)


_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
    (b"BM", "image/bmp"),
    (b"\x00\x00\x01\x00", "image/vnd.microsoft.icon"),
    (b"\x1a\x45\xdf\xa3", "video/x-matroska"),
    (b"\x00\x00\x01\xba", "video/mpeg"),
    (b"FLV\x01", "video/x-flv"),
    (b"fLaC", "audio/flac"),
    (b"ID3", "audio/mpeg"),
    (b"\xff\xfb", "audio/mpeg"),
    (b"\xff\xf3", "audio/mpeg"),
    (b"\xff\xf2", "audio/mpeg"),
    (b"%PDF-", "application/pdf"),
    (b"PK\x03\x04", "application/zip"),
)


def sniff_mime(data: bytes) -> str:
    """The MIME type libmagic (``magic.from_buffer(..., mime=True)``) reports for common formats."""
    if not data:
        return "application/x-empty"
    if data[:4] == b"RIFF" and len(data) >= 12:
        kind = data[8:12]
        if kind == b"WEBP":
            return "image/webp"
        if kind == b"WAVE":
            return "audio/x-wav"
        if kind == b"AVI ":
            return "video/x-msvideo"
    if data[4:8] == b"ftyp":
        return _ftyp_mime(data)
    if data[:4] == b"OggS":
        return "video/ogg" if b"theora" in data[:128] else "audio/ogg"
    if len(data) > 188 and data[0] == 0x47 and data[188] == 0x47:
        return "video/MP2T"
    for signature, mime in _SIGNATURES:
        if data.startswith(signature):
            if mime == "video/x-matroska" and b"webm" in data[:64]:
                return "video/webm"
            return mime
    if _is_text(data):
        head = data.lstrip()[:256].lower()
        if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in head):
            return "image/svg+xml"
        if head[:1] in (b"{", b"["):
            try:
                _ = json.loads(data)  # pyright: ignore[reportAny]
            except ValueError:
                return "text/plain"
            return "application/json"
        return "text/plain"
    return "application/octet-stream"


_URL_RE = re.compile(r"^https?://(?:[A-Za-z0-9._~:/?#\[\]@!$&'()*+,;=-]|%[0-9A-Fa-f]{2})+$")


def _contains_url(text: str) -> bool:
    """A single line that is nothing but an http(s) URL."""
    if "\n" in text or "\r" in text:
        return False
    return _URL_RE.match(text.strip()) is not None


def media_type_from_mime(mime: str, data: bytes) -> str:
    """cl_ml_tools ``determine_media_type``: image, video, audio, url, text or file."""
    if mime.startswith("image"):
        return "image"
    if mime.startswith("video"):
        return "video"
    if mime.startswith("audio"):
        return "audio"
    if mime.startswith("text"):
        return "url" if _contains_url(data.decode("utf-8")) else "text"
    return "file"


# --------------------------------------------------------------------------------------- ffmpeg


FFMPEG_MISSING = "was not found (neither on PATH nor from the imageio-ffmpeg package)"


def ffmpeg_path() -> str | None:
    """The ffmpeg executable the local service and the tests run, or None if there is none.

    A system ffmpeg on PATH comes first; otherwise the binary shipped inside the
    ``imageio-ffmpeg`` package (a dependency of the ``local`` extra), so nothing has to come
    from a system package manager.
    """
    found = shutil.which("ffmpeg")
    if found is not None:
        return found
    try:
        import imageio_ffmpeg
    except ImportError:
        return None
    try:
        shipped: str = imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError:  # no binary for this platform, and none elsewhere
        return None
    return shipped


def run_ffmpeg(args: Sequence[str], *, what: str) -> subprocess.CompletedProcess[str]:
    """Run ffmpeg with ``args``; a missing ffmpeg or a failure raises RuntimeError."""
    ffmpeg = ffmpeg_path()
    if ffmpeg is None:
        raise RuntimeError(f"ffmpeg is required for {what} but {FFMPEG_MISSING}")
    result = subprocess.run(
        [ffmpeg, *args], capture_output=True, text=True, check=False, timeout=600
    )
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"FFmpeg command failed: {tail}")
    return result
