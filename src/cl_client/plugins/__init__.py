"""Typed clients for the nine compute plugins, their typed results and parallel helpers.

Each plugin is reached through a lazily created property of
:class:`~cl_client.ComputeClient`::

    async with ComputeClient(compute_url=..., mqtt_url=...) as client:
        job = await client.hash.compute(image="photo.jpg", algorithm="md5", on_complete=print)
        digest = await client.hash.run("photo.jpg", algorithm="md5")    # submit, wait, result
        print(digest.hash_value)

Every plugin has its submission method (``client.submit``'s contract and options, returning a
JobResponse), ``result(job, ...)`` for the typed result of a completed job, and ``run(...)``,
the one-call form.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._public import load_lazy as _load_lazy

if TYPE_CHECKING:
    from ._clip_embedding import ClipEmbeddingPlugin
    from ._dino_embedding import DinoEmbeddingPlugin
    from ._exif import ExifPlugin
    from ._face_detection import FaceDetectionPlugin
    from ._face_embedding import FaceEmbeddingPlugin
    from ._hash import HashAlgorithm, HashPlugin
    from ._hls_streaming import HlsStreamingPlugin, HlsVariant, VariantSpec
    from ._image_conversion import ImageConversionPlugin, ImageFormat
    from ._media_thumbnail import MediaThumbnailPlugin
    from ._npy import NpyArray, numpy_available, parse_npy
    from ._parallel import JobCompletions, Outcome, ParallelResults, gather_parallel, run_parallel
    from ._results import (
        BoundingBox,
        ConversionResult,
        DetectedFace,
        EmbeddingResult,
        ExifMetadata,
        ExifResult,
        FaceDetectionResult,
        FaceLandmarks,
        HashResult,
        HlsResult,
        ThumbnailResult,
    )

# public name -> the module that defines it, imported on first use (PEP 562): building a
# ComputeClient does not load every plugin, result model and the auth service's client
_LAZY: dict[str, str] = {
    "BoundingBox": "._results",
    "ClipEmbeddingPlugin": "._clip_embedding",
    "ConversionResult": "._results",
    "DetectedFace": "._results",
    "DinoEmbeddingPlugin": "._dino_embedding",
    "EmbeddingResult": "._results",
    "ExifMetadata": "._results",
    "ExifPlugin": "._exif",
    "ExifResult": "._results",
    "FaceDetectionPlugin": "._face_detection",
    "FaceDetectionResult": "._results",
    "FaceEmbeddingPlugin": "._face_embedding",
    "FaceLandmarks": "._results",
    "HashAlgorithm": "._hash",
    "HashPlugin": "._hash",
    "HashResult": "._results",
    "HlsResult": "._results",
    "HlsStreamingPlugin": "._hls_streaming",
    "HlsVariant": "._hls_streaming",
    "ImageConversionPlugin": "._image_conversion",
    "ImageFormat": "._image_conversion",
    "JobCompletions": "._parallel",
    "MediaThumbnailPlugin": "._media_thumbnail",
    "NpyArray": "._npy",
    "Outcome": "._parallel",
    "ParallelResults": "._parallel",
    "ThumbnailResult": "._results",
    "VariantSpec": "._hls_streaming",
    "gather_parallel": "._parallel",
    "numpy_available": "._npy",
    "parse_npy": "._npy",
    "run_parallel": "._parallel",
}


def __getattr__(name: str) -> object:
    return _load_lazy(globals(), __name__, _LAZY, name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "BoundingBox",
    "ClipEmbeddingPlugin",
    "ConversionResult",
    "DetectedFace",
    "DinoEmbeddingPlugin",
    "EmbeddingResult",
    "ExifMetadata",
    "ExifPlugin",
    "ExifResult",
    "FaceDetectionPlugin",
    "FaceDetectionResult",
    "FaceEmbeddingPlugin",
    "FaceLandmarks",
    "HashAlgorithm",
    "HashPlugin",
    "HashResult",
    "HlsResult",
    "HlsStreamingPlugin",
    "HlsVariant",
    "ImageConversionPlugin",
    "ImageFormat",
    "JobCompletions",
    "MediaThumbnailPlugin",
    "NpyArray",
    "Outcome",
    "ParallelResults",
    "ThumbnailResult",
    "VariantSpec",
    "gather_parallel",
    "numpy_available",
    "parse_npy",
    "run_parallel",
]
