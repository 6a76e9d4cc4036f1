"""The ``exif`` plugin of the local compute service, with Pillow standing in for ExifTool.

The real server runs ``exiftool -G -n -j <file>`` (no ``tags``) or ``exiftool -n -j -Tag1 -Tag2
<file>`` (with ``tags``) and maps the first JSON object onto a typed model (docs/plugins.md#exif).
This module reproduces that output for what Pillow can read (EXIF IFD0, Exif IFD, GPS IFD, JFIF)
plus ExifTool's ``File`` and ``Composite`` groups, with ExifTool's tag names and ``-n`` (numeric)
values. It is an emulation: ExifTool knows many more tags (MakerNotes, XMP, IPTC, QuickTime, ...).

Semantics kept from the real server:

* empty ``tags``: ``raw_metadata`` keys carry group prefixes (``"EXIF:Make"``, ``"File:MIMEType"``)
  and therefore every typed field is null;
* with ``tags``: unprefixed keys, ``raw_metadata`` = ``{"SourceFile": <abs path>, <found tags>}``
  and the typed fields of those tags are filled. A typed field is only set when the value has the
  field's JSON type, exactly like the real ``_as_str``/``_as_int``/``_as_float`` helpers, so
  ``exposure_time`` stays null because ``-n`` makes ``ExposureTime`` a number (0.004);
* an unrecognised binary file makes ExifTool exit 1, which the real wrapper turns into ``{}``:
  all fields null and an empty ``raw_metadata``.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import cast

from PIL import ExifTags, Image, TiffImagePlugin
from pydantic import JsonValue

from ._plugin_base import (
    TaskContext,
    media_type_from_mime,
    output_file,
    param_str_list,
    read_input,
    sniff_mime,
    write_json,
)

__all__ = ["convert_value", "exif_task", "gps_degrees"]

EXIFTOOL_VERSION = 12.57  # Debian bookworm's libimage-exiftool-perl, which the real server used

# Where ExifTool's tag name differs from Pillow's.
_RENAMED: dict[int, str] = {
    0x0132: "ModifyDate",
    0x8827: "ISO",
    0x9004: "CreateDate",
    0x9204: "ExposureCompensation",
    0xA002: "ExifImageWidth",
    0xA003: "ExifImageHeight",
    0xA405: "FocalLengthIn35mmFormat",
    0xA431: "SerialNumber",
    0xA000: "FlashpixVersion",
}
_SKIPPED: frozenset[int] = frozenset({0x8769, 0x8825, 0xA005, 0x927C, 0x014A})

# (ExifTool FileType, FileTypeExtension) per MIME type.
_FILE_TYPES: dict[str, tuple[str, str]] = {
    "image/jpeg": ("JPEG", "jpg"),
    "image/png": ("PNG", "png"),
    "image/gif": ("GIF", "gif"),
    "image/bmp": ("BMP", "bmp"),
    "image/tiff": ("TIFF", "tif"),
    "image/webp": ("WEBP", "webp"),
    "image/heic": ("HEIC", "heic"),
    "image/avif": ("AVIF", "avif"),
    "video/mp4": ("MP4", "mp4"),
    "video/quicktime": ("MOV", "mov"),
    "video/x-matroska": ("MKV", "mkv"),
    "video/webm": ("WEBM", "webm"),
    "video/x-msvideo": ("AVI", "avi"),
    "video/MP2T": ("M2TS", "mts"),
    "audio/mpeg": ("MP3", "mp3"),
    "audio/x-wav": ("WAV", "wav"),
    "audio/flac": ("FLAC", "flac"),
    "text/plain": ("TXT", "txt"),
    "application/json": ("JSON", "json"),
    "application/pdf": ("PDF", "pdf"),
}

# Typed output fields: (field, ExifTool tag, JSON type).
_TYPED: tuple[tuple[str, str, type], ...] = (
    ("make", "Make", str),
    ("model", "Model", str),
    ("date_time_original", "DateTimeOriginal", str),
    ("create_date", "CreateDate", str),
    ("image_width", "ImageWidth", int),
    ("image_height", "ImageHeight", int),
    ("orientation", "Orientation", int),
    ("iso", "ISO", int),
    ("f_number", "FNumber", float),
    ("exposure_time", "ExposureTime", str),
    ("focal_length", "FocalLength", float),
    ("gps_latitude", "GPSLatitude", float),
    ("gps_longitude", "GPSLongitude", float),
    ("gps_altitude", "GPSAltitude", float),
    ("software", "Software", str),
)


def _number(value: float) -> JsonValue:
    """ExifTool ``-n`` prints integral rationals as integers (72, not 72.0)."""
    if not math.isfinite(value):
        return "undef"
    return int(value) if value == int(value) else round(value, 10)


def convert_value(value: object) -> JsonValue:
    """A Pillow EXIF value as ExifTool ``-n -j`` prints it."""
    if isinstance(value, TiffImagePlugin.IFDRational):
        return 0 if value.denominator == 0 else _number(float(value))
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float):
        return _number(value)
    if isinstance(value, str):
        return value.split("\x00", 1)[0].strip()
    if isinstance(value, bytes):
        if len(value) == 1:  # a single BYTE value is a number
            return value[0]
        text = value.rstrip(b"\x00")
        if text.isascii() and all(32 <= c < 127 for c in text):
            return text.decode("ascii")
        if len(value) <= 8:
            return " ".join(str(c) for c in value)
        return f"(Binary data {len(value)} bytes, use -b option to extract)"
    if isinstance(value, tuple):
        items = [convert_value(v) for v in cast(tuple[object, ...], value)]
        return " ".join(str(v) for v in items)
    return str(value)


def gps_degrees(value: object) -> float | None:
    """A GPS (degrees, minutes, seconds) triple as decimal degrees."""
    if not isinstance(value, tuple):
        return None
    items = cast(tuple[object, ...], value)
    parts = [float(v) for v in items if isinstance(v, int | float | TiffImagePlugin.IFDRational)]
    if len(parts) != 3 or len(items) != 3 or not all(math.isfinite(p) for p in parts):
        return None
    return round(parts[0] + parts[1] / 60 + parts[2] / 3600, 10)


def _exif_tags(img: Image.Image) -> tuple[dict[str, JsonValue], dict[str, JsonValue]]:
    """(EXIF group tags, Composite group tags) from Pillow's EXIF reader."""
    exif = img.getexif()
    tags: dict[str, JsonValue] = {}
    sources: list[tuple[dict[int, object], dict[int, str]]] = [
        (cast(dict[int, object], dict(exif)), ExifTags.TAGS),
        (cast(dict[int, object], exif.get_ifd(ExifTags.IFD.Exif)), ExifTags.TAGS),
    ]
    gps = cast(dict[int, object], exif.get_ifd(ExifTags.IFD.GPSInfo))
    sources.append((gps, ExifTags.GPSTAGS))
    for ifd, names in sources:
        for tag_id, raw in ifd.items():
            is_gps = names is ExifTags.GPSTAGS
            if not is_gps and tag_id in _SKIPPED:
                continue
            name = names.get(tag_id) if is_gps else _RENAMED.get(tag_id, names.get(tag_id))
            if name is None:
                continue
            if is_gps and tag_id in (2, 4):  # GPSLatitude, GPSLongitude
                degrees = gps_degrees(raw)
                tags[name] = _number(degrees) if degrees is not None else convert_value(raw)
            elif is_gps and tag_id in (0, 7) and isinstance(raw, tuple):  # GPSVersionID, TimeStamp
                parts = [convert_value(v) for v in cast(tuple[object, ...], raw)]
                sep = ":" if tag_id == 7 else " "
                tags[name] = sep.join(str(p) for p in parts)
            else:
                tags[name] = convert_value(raw)
    composite: dict[str, JsonValue] = {}
    for axis, ref_neg in (("Latitude", "S"), ("Longitude", "W")):
        value = tags.get(f"GPS{axis}")
        if isinstance(value, int | float):
            sign = -1 if tags.get(f"GPS{axis}Ref") == ref_neg else 1
            composite[f"GPS{axis}"] = _number(sign * float(value))
    altitude = tags.get("GPSAltitude")
    if isinstance(altitude, int | float):
        sign = -1 if tags.get("GPSAltitudeRef") in (1, "1") else 1
        composite["GPSAltitude"] = _number(sign * float(altitude))
    if "GPSLatitude" in composite and "GPSLongitude" in composite:
        composite["GPSPosition"] = f"{composite['GPSLatitude']} {composite['GPSLongitude']}"
    for source, target in (("FNumber", "Aperture"), ("ExposureTime", "ShutterSpeed")):
        if source in tags:
            composite[target] = tags[source]
    return tags, composite


def _file_tags(path: Path, data: bytes, mime: str) -> dict[str, JsonValue]:
    stat = path.stat()
    stamp = (
        dt.datetime.fromtimestamp(stat.st_mtime, dt.UTC)
        .astimezone()
        .strftime("%Y:%m:%d %H:%M:%S%z")
    )
    file_type, extension = _FILE_TYPES.get(mime, (mime.split("/")[-1].upper(), path.suffix[1:]))
    return {
        "FileName": path.name,
        "Directory": str(path.parent),
        "FileSize": len(data),
        "FileModifyDate": f"{stamp[:-2]}:{stamp[-2:]}",
        "FilePermissions": int(oct(stat.st_mode)[2:]),
        "FileType": file_type,
        "FileTypeExtension": extension,
        "MIMEType": mime,
    }


def _grouped_metadata(path: Path, data: bytes) -> list[tuple[str, str, JsonValue]]:
    """(group, tag, value) triples in ExifTool's order; empty when ExifTool would fail."""
    mime = sniff_mime(data)
    media_type = media_type_from_mime(mime, data)
    if media_type == "file" and mime not in _FILE_TYPES:
        return []  # ExifTool: "Unknown file type", exit status 1 -> the real wrapper returns {}
    out: list[tuple[str, str, JsonValue]] = [("ExifTool", "ExifToolVersion", EXIFTOOL_VERSION)]
    out += [("File", k, v) for k, v in _file_tags(path, data, mime).items()]
    if media_type != "image" or mime in ("image/svg+xml",):
        return out
    with Image.open(path) as img:
        width, height = img.size
        exif_tags, composite = _exif_tags(img)
    if exif_tags:
        at = data.find(b"Exif\x00\x00")
        order = data[at + 6 : at + 8] if at >= 0 else data[:2]
        out.append(("File", "ExifByteOrder", "MM" if order == b"MM" else "II"))
    out += [("File", "ImageWidth", width), ("File", "ImageHeight", height)]
    out += [("EXIF", k, v) for k, v in exif_tags.items()]
    out += [
        ("Composite", "ImageSize", f"{width} {height}"),
        ("Composite", "Megapixels", _number(round(width * height / 1e6, 6))),
    ]
    out += [("Composite", k, v) for k, v in composite.items()]
    return out


def _typed(raw: dict[str, JsonValue]) -> dict[str, JsonValue]:
    result: dict[str, JsonValue] = {}
    for field, tag, kind in _TYPED:
        value = raw.get(tag)
        if kind is str:
            result[field] = value if isinstance(value, str) else None
        elif kind is int:
            result[field] = value if isinstance(value, int) else None
        else:
            result[field] = float(value) if isinstance(value, int | float) else None
    result["raw_metadata"] = raw
    return result


def exif_task(ctx: TaskContext) -> dict[str, JsonValue]:
    """Extract metadata like ``exiftool`` and write ``output/exif_metadata.json``."""
    data = read_input(ctx)
    tags = param_str_list(ctx.params, "tags")
    ctx.progress(10)
    path = ctx.input_path.resolve()
    grouped = _grouped_metadata(path, data)
    raw: dict[str, JsonValue] = {}
    if grouped and not tags:
        raw["SourceFile"] = str(path)
        raw.update({f"{group}:{tag}": value for group, tag, value in grouped})
    elif grouped:
        # Without -G, a later group wins for a duplicated name (Composite GPS values are signed).
        by_name: dict[str, tuple[str, JsonValue]] = {}
        for _group, tag, value in grouped:
            by_name[tag.lower()] = (tag, value)
        raw["SourceFile"] = str(path)
        for requested in tags:
            found = by_name.get(requested.rsplit(":", 1)[-1].lower())
            if found is not None:
                raw[found[0]] = found[1]
    result = _typed(raw)
    write_json(output_file(ctx), result)
    ctx.progress(100)
    return result
