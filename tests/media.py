"""Test media generated on the fly (no binary files are committed).

Pillow makes the images; ffmpeg (the system's, or the one the imageio-ffmpeg package ships) makes
the video. ``tests/media/MEDIA_SETUP.md`` describes the real media files a run against a real CL
Server uses instead.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from PIL import Image, ImageDraw

__all__ = [
    "EXIF_FIELDS",
    "make_face_jpeg",
    "make_jpeg",
    "make_png",
    "make_text",
    "make_video",
]

# What make_jpeg(exif=True) writes, as ExifTool reports it with -n.
EXIF_FIELDS: dict[str, str | int | float] = {
    "Make": "TestMake",
    "Model": "TestModel X1",
    "Software": "cl-client tests",
    "DateTimeOriginal": "2024:06:20 16:45:30",
    "CreateDate": "2024:06:20 16:45:30",
    "ISO": 200,
    "FNumber": 2.8,
    "ExposureTime": 0.004,
    "FocalLength": 50,
    "Orientation": 1,
    "GPSLatitude": 37.7749,
    "GPSLongitude": -122.4194,
    "GPSAltitude": 10.5,
}


def _dms(value: float) -> tuple[float, float, float]:
    value = abs(value)
    degrees = int(value)
    minutes = int((value - degrees) * 60)
    seconds = round((value - degrees - minutes / 60) * 3600, 4)
    return float(degrees), float(minutes), seconds


def _exif() -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = EXIF_FIELDS["Make"]
    exif[0x0110] = EXIF_FIELDS["Model"]
    exif[0x0131] = EXIF_FIELDS["Software"]
    exif[0x0132] = EXIF_FIELDS["DateTimeOriginal"]
    exif[0x0112] = EXIF_FIELDS["Orientation"]
    sub = exif.get_ifd(0x8769)
    sub[0x9003] = EXIF_FIELDS["DateTimeOriginal"]
    sub[0x9004] = EXIF_FIELDS["CreateDate"]
    sub[0x8827] = EXIF_FIELDS["ISO"]
    sub[0x829D] = EXIF_FIELDS["FNumber"]
    sub[0x829A] = EXIF_FIELDS["ExposureTime"]
    sub[0x920A] = float(EXIF_FIELDS["FocalLength"])
    gps = exif.get_ifd(0x8825)
    gps[0] = b"\x02\x03\x00\x00"
    gps[1] = "N"
    gps[2] = _dms(float(EXIF_FIELDS["GPSLatitude"]))
    gps[3] = "W"
    gps[4] = _dms(float(EXIF_FIELDS["GPSLongitude"]))
    gps[5] = 0
    gps[6] = float(EXIF_FIELDS["GPSAltitude"])
    return exif


def _gradient(size: tuple[int, int]) -> Image.Image:
    """A blue/green gradient with a few shapes: detailed, and free of skin tones."""
    width, height = size
    ramp = Image.linear_gradient("L").resize(size)
    ramp_t = ramp.transpose(Image.Transpose.ROTATE_90).resize(size)
    red = Image.new("L", size, 30)
    img = Image.merge("RGB", (red, ramp, ramp_t))
    draw = ImageDraw.Draw(img)
    draw.rectangle((width // 10, height // 10, width // 3, height // 3), fill=(20, 60, 200))
    draw.ellipse(
        (width // 2, height // 2, width - width // 8, height - height // 8), fill=(0, 160, 90)
    )
    return img


def make_jpeg(path: Path, size: tuple[int, int] = (1920, 1080), exif: bool = True) -> Path:
    """A JPEG of ``size``; with ``exif`` it carries EXIF_FIELDS (camera, exposure, GPS)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = _gradient(size)
    if exif:
        img.save(path, format="JPEG", quality=90, exif=_exif())
    else:
        img.save(path, format="JPEG", quality=90)
    return path


def make_png(path: Path, size: tuple[int, int] = (800, 600), alpha: bool = True) -> Path:
    """A PNG of ``size``; with ``alpha`` it is RGBA with a transparent band."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = _gradient(size)
    if alpha:
        rgba = img.convert("RGBA")
        draw = ImageDraw.Draw(rgba)
        draw.rectangle((0, 0, size[0], size[1] // 4), fill=(0, 0, 0, 0))
        rgba.save(path, format="PNG")
    else:
        img.save(path, format="PNG")
    return path


def make_face_jpeg(path: Path, faces: int = 1, size: tuple[int, int] = (640, 480)) -> Path:
    """A JPEG with ``faces`` cartoon faces (skin-tone ovals with eyes and a mouth) in a row."""
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    img = Image.new("RGB", size, (40, 70, 140))
    draw = ImageDraw.Draw(img)
    slot = width // max(faces, 1)
    face_w = int(slot * 0.6)
    face_h = min(int(face_w * 1.3), int(height * 0.8))
    top = (height - face_h) // 2
    for i in range(faces):
        left = i * slot + (slot - face_w) // 2
        draw.ellipse((left, top, left + face_w, top + face_h), fill=(224, 172, 140))
        eye_y = top + face_h * 0.42
        for ex in (0.32, 0.68):
            cx = left + face_w * ex
            draw.ellipse(
                (
                    cx - face_w * 0.06,
                    eye_y - face_h * 0.03,
                    cx + face_w * 0.06,
                    eye_y + face_h * 0.03,
                ),
                fill=(40, 30, 30),
            )
        mouth_y = top + face_h * 0.78
        draw.rectangle(
            (left + face_w * 0.35, mouth_y, left + face_w * 0.65, mouth_y + face_h * 0.04),
            fill=(150, 40, 50),
        )
    img.save(path, format="JPEG", quality=92)
    return path


def make_text(path: Path, text: str = "hello, world\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def make_video(
    path: Path, seconds: int = 3, size: tuple[int, int] = (320, 240), audio: bool = True
) -> Path | None:
    """An H.264 MP4 (testsrc pattern, 30 fps, a keyframe every second, optional sine audio).

    Returns None when there is no ffmpeg (``cl_client.testing.ffmpeg_path``: the system's, else
    the one shipped by the imageio-ffmpeg package).
    """
    from cl_client.testing import ffmpeg_path

    ffmpeg = ffmpeg_path()
    if ffmpeg is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    args = [ffmpeg, "-loglevel", "error", "-y"]
    args += ["-f", "lavfi", "-i", f"testsrc=duration={seconds}:size={width}x{height}:rate=30"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}"]
    args += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "30"]
    if audio:
        args += ["-c:a", "aac", "-shortest"]
    args += ["-movflags", "+faststart", str(path)]
    _ = subprocess.run(args, check=True, capture_output=True, timeout=120)
    return path
