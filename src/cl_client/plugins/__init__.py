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

from .._public import set_public_module as _set_public_module
from ._clip_embedding import ClipEmbeddingPlugin
from ._dino_embedding import DinoEmbeddingPlugin
from ._exif import ExifPlugin
from ._face_detection import FaceDetectionPlugin
from ._face_embedding import FaceEmbeddingPlugin
from ._hash import HashAlgorithm, HashPlugin
from ._hls_streaming import HlsStreamingPlugin, HlsVariant, VariantSpec
from ._image_conversion import ImageConversionPlugin, ImageFormat
from ._media_thumbnail import MediaThumbnailPlugin
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
    NpyArray,
    ThumbnailResult,
    numpy_available,
    parse_npy,
)

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

_set_public_module(globals(), __all__, __name__)
