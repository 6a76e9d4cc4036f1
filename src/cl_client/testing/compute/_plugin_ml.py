"""EMULATED machine-learning plugins: clip/dino/face embeddings and face detection.

The real server runs ONNX models (MobileCLIP-B-LT, DINOv2 ViT-S/14, ArcFace, YuNet) downloaded from
model hubs; none can be used here. These tasks keep the real server's wire contract (task_output
shape, files written, float32 ``.npy`` vectors of the right dimension, normalised coordinates,
112x112 face crops) but the numbers are emulated:

* embeddings are deterministic pseudo-random vectors seeded from sha256 of the input bytes (same
  file -> same vector; different files -> unrelated vectors), L2-normalised when ``normalize``;
* faces are found by a deterministic skin-tone blob heuristic, not a neural detector.

Like the real models, every task first decodes the input with Pillow, so a non-image fails the job.
"""

from __future__ import annotations

import hashlib
from collections import deque
from pathlib import Path
from typing import TypedDict

from PIL import Image
from pydantic import JsonValue

from ._plugin_base import (
    TaskContext,
    emulated_unit_floats,
    l2_normalize,
    output_file,
    param_bool,
    param_float,
    read_input,
    write_json,
    write_npy_f4,
)

__all__ = [
    "CLIP_DIM",
    "DINO_DIM",
    "FACE_DIM",
    "Box",
    "clip_embedding_task",
    "dino_embedding_task",
    "face_detection_task",
    "face_embedding_task",
    "nms",
]

CLIP_DIM = 512
DINO_DIM = 384
FACE_DIM = 512

# ArcFace's 112x112 reference landmarks (the geometry the real aligned crops are warped to):
# person's right eye, left eye, nose tip, right and left mouth corners, as fractions of the crop.
_LANDMARK_LAYOUT: tuple[tuple[str, float, float], ...] = (
    ("right_eye", 38.2946 / 112, 51.6963 / 112),
    ("left_eye", 73.5318 / 112, 51.5014 / 112),
    ("nose_tip", 56.0252 / 112, 71.7366 / 112),
    ("mouth_right", 41.5493 / 112, 92.3655 / 112),
    ("mouth_left", 70.7299 / 112, 92.2041 / 112),
)
_CROP_SIZE = 112
_GRID = 96  # the detector works on the image fitted into a _GRID x _GRID box


def _image_size(path: Path) -> tuple[int, int]:
    """Decode the image (fails for non-images, like the real models) and return its size."""
    with Image.open(path) as img:
        img.load()
        return img.size


def _embedding_task(ctx: TaskContext, salt: str, dim: int) -> tuple[list[float], bool]:
    data = read_input(ctx)
    ctx.progress(10)
    _ = _image_size(ctx.input_path)
    normalize = param_bool(ctx.params, "normalize", True)
    vector = emulated_unit_floats(data, salt, dim)
    if normalize:
        vector = l2_normalize(vector)
    write_npy_f4(output_file(ctx), vector)
    ctx.progress(100)
    return vector, normalize


def clip_embedding_task(ctx: TaskContext) -> dict[str, JsonValue]:
    """EMULATED MobileCLIP image embedding: ``output/clip_embedding.npy`` float32 (512,)."""
    _, normalized = _embedding_task(ctx, "clip_embedding", CLIP_DIM)
    return {"embedding_dim": CLIP_DIM, "normalized": normalized}


def dino_embedding_task(ctx: TaskContext) -> dict[str, JsonValue]:
    """EMULATED DINOv2 CLS embedding: ``output/dino_embedding.npy`` float32 (384,)."""
    _, normalized = _embedding_task(ctx, "dino_embedding", DINO_DIM)
    return {"normalized": normalized, "embedding_dim": DINO_DIM}


def face_embedding_task(ctx: TaskContext) -> dict[str, JsonValue]:
    """EMULATED ArcFace embedding: ``output/face_embedding.npy`` float32 (512,).

    ``quality_score`` is a deterministic value in [0.5, 1.0) derived from the input bytes.
    """
    _, normalized = _embedding_task(ctx, "face_embedding", FACE_DIM)
    digest = hashlib.sha256(b"quality\x00" + ctx.input_path.read_bytes()).digest()
    quality = round(0.5 + int.from_bytes(digest[:4], "little") / 8589934592.0, 4)
    return {"normalized": normalized, "embedding_dim": FACE_DIM, "quality_score": quality}


# ------------------------------------------------------------------------------ face detection


class Box(TypedDict):
    x1: float
    y1: float
    x2: float
    y2: float
    confidence: float


def _is_skin(r: int, g: int, b: int) -> bool:
    """The classic RGB skin-tone rule (Kovac et al.)."""
    return (
        r > 95
        and g > 40
        and b > 20
        and max(r, g, b) - min(r, g, b) > 15
        and abs(r - g) > 15
        and r > g
        and r > b
    )


def _skin_blobs(rgb: Image.Image) -> list[Box]:
    """Connected skin-tone regions of a small copy of the image, as boxes in grid units."""
    small = rgb.copy()
    small.thumbnail((_GRID, _GRID), Image.Resampling.BILINEAR)
    sw, sh = small.size
    raw = small.tobytes()
    mask = [_is_skin(raw[i], raw[i + 1], raw[i + 2]) for i in range(0, sw * sh * 3, 3)]
    seen = [False] * (sw * sh)
    min_area = max(6, (sw * sh) // 400)
    boxes: list[Box] = []
    for start in range(sw * sh):
        if not mask[start] or seen[start]:
            continue
        seen[start] = True
        queue = deque([start])
        area, x0, y0, x1, y1 = 0, sw, sh, -1, -1
        while queue:
            idx = queue.popleft()
            area += 1
            x, y = idx % sw, idx // sw
            x0, y0, x1, y1 = min(x0, x), min(y0, y), max(x1, x), max(y1, y)
            for nx, ny in ((x - 1, y), (x + 1, y), (x, y - 1), (x, y + 1)):
                n = ny * sw + nx
                if 0 <= nx < sw and 0 <= ny < sh and mask[n] and not seen[n]:
                    seen[n] = True
                    queue.append(n)
        bw, bh = x1 - x0 + 1, y1 - y0 + 1
        fill = area / (bw * bh)
        if area < min_area or not 0.4 <= bw / bh <= 2.5 or fill < 0.4:
            continue
        if bw * bh > 0.6 * sw * sh:  # a skin-coloured background is not a face
            continue
        boxes.append(
            {
                "x1": x0 / sw,
                "y1": y0 / sh,
                "x2": (x1 + 1) / sw,
                "y2": (y1 + 1) / sh,
                "confidence": round(0.7 + 0.29 * fill, 4),
            }
        )
    return boxes


def _iou(a: Box, b: Box) -> float:
    iw = max(0.0, min(a["x2"], b["x2"]) - max(a["x1"], b["x1"]))
    ih = max(0.0, min(a["y2"], b["y2"]) - max(a["y1"], b["y1"]))
    inter = iw * ih
    union = (
        (a["x2"] - a["x1"]) * (a["y2"] - a["y1"])
        + (b["x2"] - b["x1"]) * (b["y2"] - b["y1"])
        - inter
    )
    return inter / union if union > 0 else 0.0


def nms(boxes: list[Box], threshold: float) -> list[Box]:
    kept: list[Box] = []
    for box in sorted(boxes, key=lambda b: (-b["confidence"], b["y1"], b["x1"])):
        if all(_iou(box, other) <= threshold for other in kept):
            kept.append(box)
    return kept


def face_detection_task(ctx: TaskContext) -> dict[str, JsonValue]:
    """EMULATED YuNet face detection (skin-tone blobs), writing the real server's files.

    Writes ``faces/face_{i}.png`` (112x112 crops of each box), ``output/face_detection.json``
    (same object as the task_output) and returns ``{"faces", "num_faces", "image_width",
    "image_height"}``; coordinates are normalised to [0, 1]. Boxes whose confidence is below
    ``confidence_threshold`` are dropped; overlapping boxes go through NMS at ``nms_threshold``.
    """
    _ = read_input(ctx)
    threshold = param_float(ctx.params, "confidence_threshold", 0.7)
    nms_threshold = param_float(ctx.params, "nms_threshold", 0.4)
    with Image.open(ctx.input_path) as img:
        rgb = img.convert("RGB")
    width, height = rgb.size
    ctx.progress(10)
    boxes = nms([b for b in _skin_blobs(rgb) if b["confidence"] >= threshold], nms_threshold)
    ctx.progress(60)
    faces: list[JsonValue] = []
    for i, box in enumerate(boxes):
        bw, bh = box["x2"] - box["x1"], box["y2"] - box["y1"]
        landmarks: dict[str, JsonValue] = {
            name: [box["x1"] + fx * bw, box["y1"] + fy * bh] for name, fx, fy in _LANDMARK_LAYOUT
        }
        crop_box = (
            round(box["x1"] * width),
            round(box["y1"] * height),
            max(round(box["x2"] * width), round(box["x1"] * width) + 1),
            max(round(box["y2"] * height), round(box["y1"] * height) + 1),
        )
        crop = rgb.crop(crop_box).resize((_CROP_SIZE, _CROP_SIZE), Image.Resampling.BILINEAR)
        rel = f"faces/face_{i}.png"
        crop.save(output_file(ctx, rel), format="PNG")
        faces.append(
            {
                "bbox": {"x1": box["x1"], "y1": box["y1"], "x2": box["x2"], "y2": box["y2"]},
                "confidence": box["confidence"],
                "landmarks": landmarks,
                "file_path": rel,
            }
        )
    result: dict[str, JsonValue] = {
        "faces": faces,
        "num_faces": len(faces),
        "image_width": width,
        "image_height": height,
    }
    write_json(output_file(ctx), result)
    ctx.progress(100)
    return result
