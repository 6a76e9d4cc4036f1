"""Typed plugin results and the server payloads they come from.

Results are frozen dataclasses that carry the final :class:`~cl_client.JobResponse` (``.job``)
and the plugin's output in typed form. Server payloads (``task_output``, ``output/hash.json``) are
parsed with pydantic models; ``.npy`` files with :func:`~._npy.parse_npy` (``_npy.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, TypeAlias, TypeVar, cast

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, field_validator

from .._core.errors import ParameterError, ProtocolError
from .._core.models import JobResponse
from .._core.payloads import decode_json
from ._npy import NpyArray, numpy_available, parse_npy

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    Vector: TypeAlias = NDArray[np.float32] | list[float]

__all__ = [
    "BoundingBox",
    "ConversionResult",
    "DetectedFace",
    "EmbeddingResult",
    "ExifMetadata",
    "ExifResult",
    "FaceDetectionResult",
    "FaceLandmarks",
    "HashResult",
    "HlsResult",
    "NpyArray",
    "ThumbnailResult",
    "build_embedding",
    "check_numpy",
    "decode_playlist",
    "numpy_available",
    "parse_json_payload",
    "parse_npy",
    "parse_payload",
    "playlist_uris",
]

P = TypeVar("P", bound=BaseModel)

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MAX_COORD = 1e6
"""Normalised coordinates beyond this are refused (they would overflow when scaled)."""


def _no_control(value: str | None) -> str | None:
    if value is not None and _CONTROL.search(value):
        raise ValueError("control characters in a path")
    return value


# ------------------------------------------------------------------------------------ payloads


class _Payload(BaseModel):
    model_config: ClassVar[ConfigDict] = ConfigDict(extra="allow", frozen=True)


class EmbeddingOutput(_Payload):
    """``task_output`` of the embedding plugins."""

    embedding_dim: int | None = None
    normalized: bool | None = None
    quality_score: float | None = None


class HashOutput(_Payload):
    """``output/hash.json`` of the hash plugin."""

    hash_value: str
    algorithm: str
    media_type: str | None = None
    process_time: float | None = None


class ExifMetadata(_Payload):
    """The exif plugin's ``task_output``: typed fields plus everything ExifTool reported.

    The typed fields are filled only when the job was given ``tags`` (ExifTool then reports
    unprefixed names); without tags every key in ``raw_metadata`` carries its group
    (``"EXIF:Make"``) and the typed fields stay None. :meth:`get` finds a tag either way.
    """

    make: str | None = None
    model: str | None = None
    date_time_original: str | None = None
    create_date: str | None = None
    image_width: int | None = None
    image_height: int | None = None
    orientation: int | None = None
    iso: int | None = None
    f_number: float | None = None
    exposure_time: str | None = None
    focal_length: float | None = None
    gps_latitude: float | None = None
    gps_longitude: float | None = None
    gps_altitude: float | None = None
    software: str | None = None
    raw_metadata: dict[str, JsonValue] = Field(default_factory=dict)

    def get(self, tag: str, default: JsonValue = None) -> JsonValue:
        """A raw tag by name, with or without its group (``"Make"`` finds ``"EXIF:Make"``)."""
        if tag in self.raw_metadata:
            return self.raw_metadata[tag]
        wanted = tag.rsplit(":", 1)[-1].lower()
        for key, value in self.raw_metadata.items():
            if key.rsplit(":", 1)[-1].lower() == wanted:
                return value
        return default


class BoundingBox(_Payload):
    """A face box, normalised to [0, 1] of the image size."""

    x1: float = Field(ge=-_MAX_COORD, le=_MAX_COORD)
    y1: float = Field(ge=-_MAX_COORD, le=_MAX_COORD)
    x2: float = Field(ge=-_MAX_COORD, le=_MAX_COORD)
    y2: float = Field(ge=-_MAX_COORD, le=_MAX_COORD)

    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1

    def to_pixels(self, image_width: int, image_height: int) -> tuple[int, int, int, int]:
        """``(left, top, right, bottom)`` in pixels of an image of the given size."""
        return (
            round(self.x1 * image_width),
            round(self.y1 * image_height),
            round(self.x2 * image_width),
            round(self.y2 * image_height),
        )


class FaceLandmarks(_Payload):
    """Five facial landmarks, each ``(x, y)`` normalised to [0, 1]."""

    right_eye: tuple[float, float]
    left_eye: tuple[float, float]
    nose_tip: tuple[float, float]
    mouth_right: tuple[float, float]
    mouth_left: tuple[float, float]


class DetectedFace(_Payload):
    """One face: box, confidence, landmarks and the job-relative path of its aligned crop."""

    bbox: BoundingBox
    confidence: float
    landmarks: FaceLandmarks | None = None
    file_path: str | None = None

    _file_path_ok = field_validator("file_path")(_no_control)

    @field_validator("bbox", mode="before")
    @classmethod
    def _bbox_from_list(cls, value: object) -> object:
        # cl_ml_tools' DetectedFace.model_dump override turns the box into [x1, y1, x2, y2]
        # when it is applied (it is not, for nested models, with current pydantic).
        if isinstance(value, list | tuple):
            items = list(cast(list[object] | tuple[object, ...], value))
            if len(items) == 4:
                return dict(zip(("x1", "y1", "x2", "y2"), items, strict=True))
        return cast(object, value)


class FaceDetectionOutput(_Payload):
    """``task_output`` of face_detection."""

    faces: list[DetectedFace] = Field(default_factory=list)
    num_faces: int | None = None
    image_width: int
    image_height: int


class HlsOutput(_Payload):
    """``task_output`` of hls_streaming (``master_playlist`` is an absolute server path)."""

    master_playlist: str
    variants_generated: int | None = None

    _path_ok = field_validator("master_playlist")(_no_control)
    total_segments: int | None = None
    include_original: bool | None = None


class MediaTypeOutput(_Payload):
    """``task_output`` of media_thumbnail (and of hash): the detected media type."""

    media_type: str | None = None


# ------------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class EmbeddingResult:
    """An embedding: ``vector`` is a numpy float32 array when numpy is installed, else floats.

    ``quality_score`` is set by face_embedding only.
    """

    job: JobResponse
    vector: NDArray[np.float32] | list[float] = field(repr=False)
    dim: int
    normalized: bool | None
    quality_score: float | None = None

    def tolist(self) -> list[float]:
        """The vector as a list of Python floats."""
        if isinstance(self.vector, list):
            return list(self.vector)
        return [float(v) for v in cast(list[float], self.vector.tolist())]


@dataclass(frozen=True)
class HashResult:
    """A file's hash (``algorithm``: ``md5``, ``sha512_image``, ``sha512_video``, ...)."""

    job: JobResponse
    hash_value: str
    algorithm: str
    media_type: str | None
    process_time: float | None


@dataclass(frozen=True)
class ExifResult:
    """EXIF metadata: ``metadata.make``, ``metadata.iso``, ..., ``metadata.raw_metadata``."""

    job: JobResponse
    metadata: ExifMetadata


@dataclass(frozen=True)
class FaceDetectionResult:
    """Faces found in an image; crops are downloaded with ``face_detection.download_crops``."""

    job: JobResponse
    faces: list[DetectedFace]
    image_width: int
    image_height: int

    @property
    def num_faces(self) -> int:
        return len(self.faces)


@dataclass(frozen=True)
class ThumbnailResult:
    """A thumbnail (always JPEG) saved to ``path``."""

    job: JobResponse
    path: Path
    media_type: str | None


@dataclass(frozen=True)
class ConversionResult:
    """A converted image saved to ``path`` (``format`` as requested: png, jpg, webp, ...)."""

    job: JobResponse
    path: Path
    format: str


@dataclass(frozen=True)
class HlsResult:
    """An HLS bundle saved under ``directory``: the master playlist, every variant playlist and
    every segment, with the relative layout the playlists reference."""

    job: JobResponse
    directory: Path
    master_playlist: Path
    variant_playlists: list[Path]
    segments: list[Path]
    variants_generated: int | None
    total_segments: int | None
    include_original: bool | None

    @property
    def files(self) -> list[Path]:
        """Every downloaded file: master first, then variant playlists, then segments."""
        return [self.master_playlist, *self.variant_playlists, *self.segments]


# ------------------------------------------------------------------------------------- builders


def parse_payload(model: type[P], value: object, what: str) -> P:
    """Validate a server payload, as ProtocolError naming ``what`` when it does not fit.

    ``value`` comes from a decoded JSON body (``task_output``), already bounded in size and
    nesting by the HTTP decoder.
    """
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise ProtocolError(f"unexpected {what}: {_validation_text(exc)}") from None


def parse_json_payload(model: type[P], data: bytes, what: str) -> P:
    """Validate a JSON file from the server (ProtocolError naming ``what`` if it does not fit).

    The bytes are decoded by the bounded JSON decoder first (size, nesting, UTF-8, numbers).
    """
    return parse_payload(model, decode_json(data, what, max_size=MAX_JSON_FILE), what)


def _validation_text(exc: ValidationError) -> str:
    parts = [
        f"{'.'.join(str(p) for p in error['loc']) or 'value'}: {error['msg']}"
        for error in exc.errors(include_url=False, include_input=False, include_context=False)
    ]
    text = "; ".join(parts)
    return text if len(text) <= 300 else f"{text[:300]}..."


MAX_JSON_FILE = 4 * 1024 * 1024
"""Largest JSON result file (``output/hash.json``) decoded."""
MAX_PLAYLIST = 4 * 1024 * 1024
"""Largest HLS playlist decoded."""
_MAX_URI = 2048


def decode_playlist(data: bytes, what: str) -> list[str]:
    """The URIs an m3u8 playlist references (see ``playlist_uris``), decoded from bytes.

    ProtocolError naming ``what`` if it is too large, not UTF-8, or references a URI that is
    too long or holds control characters.
    """
    if len(data) > MAX_PLAYLIST:
        raise ProtocolError(f"{what} is {len(data)} bytes, more than the {MAX_PLAYLIST} accepted")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"{what} is not UTF-8 text (invalid byte at {exc.start})") from None
    uris = playlist_uris(text)
    for uri in uris:
        if len(uri) > _MAX_URI or _CONTROL.search(uri):
            raise ProtocolError(f"{what} references an invalid URI {uri[:60]!r}")
    return uris


_URI_ATTR = re.compile(r'URI="([^"]*)"')


def playlist_uris(text: str) -> list[str]:
    """The URIs an m3u8 playlist references: its URI lines and ``URI="..."`` attributes
    (``#EXT-X-MEDIA``, ``#EXT-X-I-FRAME-STREAM-INF``, ``#EXT-X-MAP``, ...), in order, once each."""
    found: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            if line.startswith("#EXT-X-KEY") or line.startswith("#EXT-X-SESSION-KEY"):
                continue
            found.extend(_URI_ATTR.findall(line))
        else:
            found.append(line)
    return list(dict.fromkeys(found))


def build_embedding(
    job: JobResponse, data: bytes, *, default_dim: int, numpy: bool | None
) -> EmbeddingResult:
    """An EmbeddingResult from the job and its ``.npy`` file, the shape checked against
    ``task_output.embedding_dim`` (or ``default_dim`` when the server did not say)."""
    output = parse_payload(EmbeddingOutput, job.task_output or {}, f"{job.task_type} output")
    dim = output.embedding_dim if output.embedding_dim is not None else default_dim
    array = parse_npy(data)
    if array.shape != (dim,):
        raise ProtocolError(
            f"the {job.task_type} embedding of job {job.job_id} has shape {array.shape}, "
            f"expected ({dim},)"
        )
    check_numpy(numpy)
    use_numpy = numpy_available() if numpy is None else numpy
    vector: Vector = array.to_numpy() if use_numpy else array.tolist()
    return EmbeddingResult(
        job=job,
        vector=vector,
        dim=dim,
        normalized=output.normalized,
        quality_score=output.quality_score,
    )


def check_numpy(numpy: object) -> None:
    """ParameterError unless ``numpy`` is None or a bool (True needs numpy installed)."""
    if numpy is not None and not isinstance(numpy, bool):
        raise ParameterError(f"numpy must be None, True or False, got {numpy!r}")
    if numpy and not numpy_available():
        raise ParameterError("numpy=True, but numpy is not installed (pip install numpy)")
