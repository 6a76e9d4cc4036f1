"""The task side of the nine plugins of the local compute service (docs/plugins.md).

``TASKS[task_type](ctx)`` runs one job synchronously (the job machinery calls it in a worker
thread): it reads ``ctx.input_path``, writes the real server's output files under ``ctx.job_dir``
and returns the ``task_output`` dict; an exception fails the job with its message as
``error_message``.

Real outputs: ``hash`` (md5 / sha512 of the decoded pixels or of the bytes), ``exif`` (Pillow's EXIF
reader standing in for ExifTool), ``media_thumbnail`` and ``image_conversion`` (Pillow; video
thumbnails with ffmpeg), ``hls_streaming`` (ffmpeg; without ffmpeg the job fails saying so).
EMULATED outputs: ``clip_embedding``, ``dino_embedding``, ``face_embedding`` (deterministic vectors
seeded from the input bytes) and ``face_detection`` (a skin-tone blob heuristic) — no model weights.
"""

from __future__ import annotations

from ._plugin_base import TaskContext, TaskFn
from ._plugin_exif import exif_task
from ._plugin_media import (
    hash_task,
    hls_streaming_task,
    image_conversion_task,
    media_thumbnail_task,
)
from ._plugin_ml import (
    clip_embedding_task,
    dino_embedding_task,
    face_detection_task,
    face_embedding_task,
)

__all__ = ["TASKS", "TaskContext", "TaskFn"]

TASKS: dict[str, TaskFn] = {
    "clip_embedding": clip_embedding_task,
    "dino_embedding": dino_embedding_task,
    "exif": exif_task,
    "face_detection": face_detection_task,
    "face_embedding": face_embedding_task,
    "hash": hash_task,
    "hls_streaming": hls_streaming_task,
    "image_conversion": image_conversion_task,
    "media_thumbnail": media_thumbnail_task,
}
