"""The nine plugin submission routes of the local compute service.

How the real server takes submissions: docs/protocol.md#submitting-a-job and docs/plugins.md.

``plugin_router(submit)`` returns a FastAPI router with ``POST /jobs/{name}`` for every plugin, each
declaring exactly the real server's multipart form fields (cl_ml_tools ``plugins/*/routes.py``):
same names, types, defaults and constraints, so FastAPI produces byte-identical 422 bodies
(``loc: ["body", "file"]`` and so on). The upload field is always ``file`` and every route has
``priority`` (int 0..10, default 5).

The routes compute the job ``params`` exactly as the real server stores them (plugin parameters plus
the relative ``output_path``; the job machinery adds ``input_path``) and hand the upload to
``submit(task_type, upload, params, priority)``, which saves it as ``input/<original filename>``,
creates the job and returns the JobCreated body.

Where the real server fails with an unhandled exception (a ``text/plain`` 500 ``Internal Server
Error``), these routes answer the same: ``hls_streaming`` with malformed ``variants`` JSON, a
variant that does not validate, or ``variants=[]``, and any upload with an empty filename.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import PurePosixPath
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, Field, JsonValue, ValidationError

__all__ = ["PLUGIN_NAMES", "JobCreatedResponse", "SubmitFn", "plugin_router"]

SubmitFn = Callable[[str, UploadFile, dict[str, JsonValue], int], Awaitable[dict[str, JsonValue]]]
"""``(task_type, upload, params, priority) -> JobCreated JSON body``."""

PLUGIN_NAMES: tuple[str, ...] = (
    "clip_embedding",
    "dino_embedding",
    "exif",
    "face_detection",
    "face_embedding",
    "hash",
    "hls_streaming",
    "image_conversion",
    "media_thumbnail",
)

DEFAULT_HLS_VARIANTS = '[{"resolution":720,"bitrate":3500},{"resolution":480,"bitrate":1500}]'

ImageFormat = Literal["png", "jpg", "jpeg", "webp", "gif", "bmp", "tiff"]
Priority = Annotated[int, Form(ge=0, le=10, description="Job priority (0-10)")]
Normalize = Annotated[bool, Form(description="Whether to L2-normalize the embedding")]


class JobCreatedResponse(BaseModel):
    """The 200 body of a submission (documents the route in OpenAPI, as the real server does)."""

    job_id: str
    status: str
    task_type: str


class _VariantConfig(BaseModel):
    """One HLS variant as the real server validates it (``hls_streaming/schema.py``)."""

    resolution: int | None = None
    bitrate: int | None = Field(default=None, ge=100)


class _RouteFailure(Exception):
    """An error the real server does not handle: answered with a plain-text 500."""


def _internal_server_error() -> PlainTextResponse:
    return PlainTextResponse("Internal Server Error", status_code=500)


def _parse_variants(variants: str) -> list[JsonValue]:
    """Parse ``variants`` like the real route (``json.loads`` then ``VariantConfig(**v)``)."""
    try:
        parsed: JsonValue = json.loads(variants)  # pyright: ignore[reportAny]
    except ValueError as exc:
        raise _RouteFailure(str(exc)) from exc
    # The real route iterates whatever json.loads returned and splats each item into the model:
    # anything but a list of objects raises TypeError there.
    if not isinstance(parsed, list):
        raise _RouteFailure("variants is not a JSON list")
    result: list[JsonValue] = []
    for item in parsed:
        if not isinstance(item, dict):
            raise _RouteFailure("a variant is not a JSON object")
        try:
            model = _VariantConfig.model_validate(item)
        except ValidationError as exc:
            raise _RouteFailure(str(exc)) from exc
        result.append({"resolution": model.resolution, "bitrate": model.bitrate})
    if not result:
        # HLSStreamingParams' validator: "At least one variant must be specified".
        raise _RouteFailure("At least one variant must be specified")
    return result


def plugin_router(submit: SubmitFn) -> APIRouter:
    """Build the router with ``POST /jobs/{name}`` for the nine plugins."""
    router = APIRouter()

    async def create(
        task_type: str, file: UploadFile, params: dict[str, JsonValue], priority: int
    ) -> Response:
        if not file.filename:
            # create_job_from_upload: ValueError("Uploaded file has no filename") -> 500.
            return _internal_server_error()
        body = await submit(task_type, file, params, priority)
        return JSONResponse(body)

    @router.post("/jobs/clip_embedding", response_model=JobCreatedResponse)
    async def create_clip_embedding_job(
        file: Annotated[
            UploadFile, File(description="Image file for semantic similarity embedding")
        ],
        normalize: Normalize = True,
        priority: Priority = 5,
    ) -> Response:
        params: dict[str, JsonValue] = {
            "output_path": "output/clip_embedding.npy",
            "normalize": normalize,
        }
        return await create("clip_embedding", file, params, priority)

    @router.post("/jobs/dino_embedding", response_model=JobCreatedResponse)
    async def create_dino_embedding_job(
        file: Annotated[UploadFile, File(description="Image file for visual similarity embedding")],
        normalize: Normalize = True,
        priority: Priority = 5,
    ) -> Response:
        params: dict[str, JsonValue] = {
            "output_path": "output/dino_embedding.npy",
            "normalize": normalize,
        }
        return await create("dino_embedding", file, params, priority)

    @router.post("/jobs/exif", response_model=JobCreatedResponse)
    async def create_exif_extraction_job(
        file: Annotated[UploadFile, File(description="Media file to extract EXIF metadata from")],
        tags: Annotated[
            str, Form(description="Comma-separated EXIF tags to extract (empty for all)")
        ] = "",
        priority: Priority = 5,
    ) -> Response:
        tags_list: list[JsonValue] = [tag.strip() for tag in tags.split(",") if tag.strip()]
        params: dict[str, JsonValue] = {
            "output_path": "output/exif_metadata.json",
            "tags": tags_list,
        }
        return await create("exif", file, params, priority)

    @router.post("/jobs/face_detection", response_model=JobCreatedResponse)
    async def create_face_detection_job(
        file: Annotated[UploadFile, File(description="Image file to detect faces in")],
        confidence_threshold: Annotated[
            float, Form(ge=0.0, le=1.0, description="Minimum confidence threshold (0.0-1.0)")
        ] = 0.7,
        nms_threshold: Annotated[
            float,
            Form(ge=0.0, le=1.0, description="NMS threshold for overlapping boxes (0.0-1.0)"),
        ] = 0.4,
        priority: Priority = 5,
    ) -> Response:
        params: dict[str, JsonValue] = {
            "output_path": "output/face_detection.json",
            "confidence_threshold": confidence_threshold,
            "nms_threshold": nms_threshold,
        }
        return await create("face_detection", file, params, priority)

    @router.post("/jobs/face_embedding", response_model=JobCreatedResponse)
    async def create_face_embedding_job(
        file: Annotated[UploadFile, File(description="Cropped face image file")],
        normalize: Normalize = True,
        priority: Priority = 5,
    ) -> Response:
        params: dict[str, JsonValue] = {
            "output_path": "output/face_embedding.npy",
            "normalize": normalize,
        }
        return await create("face_embedding", file, params, priority)

    @router.post("/jobs/hash", response_model=JobCreatedResponse)
    async def create_hash_job(
        file: Annotated[UploadFile, File(description="File to hash")],
        algorithm: Annotated[
            Literal["sha512", "md5"], Form(description="Hash algorithm to use (sha512 or md5)")
        ] = "sha512",
        priority: Priority = 5,
    ) -> Response:
        params: dict[str, JsonValue] = {"output_path": "output/hash.json", "algorithm": algorithm}
        return await create("hash", file, params, priority)

    @router.post("/jobs/hls_streaming", response_model=JobCreatedResponse)
    async def create_hls_job(
        file: Annotated[UploadFile, File(description="Video file to convert")],
        variants: Annotated[
            str, Form(description="JSON array of variants: [{resolution:720,bitrate:3500}]")
        ] = DEFAULT_HLS_VARIANTS,
        include_original: Annotated[bool, Form(description="Include original quality")] = False,
        priority: Priority = 5,
    ) -> Response:
        try:
            variant_list = _parse_variants(variants)
        except _RouteFailure:
            return _internal_server_error()
        params: dict[str, JsonValue] = {
            "output_path": "output",
            "variants": variant_list,
            "include_original": include_original,
        }
        return await create("hls_streaming", file, params, priority)

    @router.post("/jobs/image_conversion", response_model=JobCreatedResponse)
    async def create_conversion_job(
        file: Annotated[UploadFile, File(description="Image file to convert")],
        target_format: Annotated[ImageFormat, Form(alias="format", description="Target format")],
        quality: Annotated[int, Form(ge=1, le=100, description="Output quality (1-100)")] = 85,
        priority: Priority = 5,
    ) -> Response:
        output_ext = "jpg" if target_format == "jpeg" else target_format
        stem = PurePosixPath(f"input/{file.filename or ''}").stem
        params: dict[str, JsonValue] = {
            "output_path": f"output/converted_{stem}.{output_ext}",
            "format": target_format,
            "quality": quality,
        }
        return await create("image_conversion", file, params, priority)

    @router.post("/jobs/media_thumbnail", response_model=JobCreatedResponse)
    async def create_thumbnail_job(
        file: Annotated[UploadFile, File(description="Media file to thumbnail (image or video)")],
        width: Annotated[int | None, Form(gt=0, description="Target width in pixels")] = None,
        height: Annotated[int | None, Form(gt=0, description="Target height in pixels")] = None,
        maintain_aspect_ratio: Annotated[bool, Form(description="Maintain aspect ratio")] = True,
        priority: Priority = 5,
    ) -> Response:
        params: dict[str, JsonValue] = {
            "output_path": "output/thumbnail.jpg",
            "width": width,
            "height": height,
            "maintain_aspect_ratio": maintain_aspect_ratio,
        }
        return await create("media_thumbnail", file, params, priority)

    _ = (
        create_clip_embedding_job,
        create_dino_embedding_job,
        create_exif_extraction_job,
        create_face_detection_job,
        create_face_embedding_job,
        create_hash_job,
        create_hls_job,
        create_conversion_job,
        create_thumbnail_job,
    )
    return router
