"""The local compute service's FastAPI app: every route of the real server.

The routes are described in docs/protocol.md#routes.

Same paths, status codes, bodies and quirks as ``cl_server_compute@5ff460a``:

* an ``HTTPException`` becomes ``{"detail": ...}`` without its headers (compute's own handler, so
  a 401 carries no ``WWW-Authenticate``); an unhandled exception is a ``text/plain`` 500;
* ``POST /jobs/unknown`` is a 405 because it matches ``GET/DELETE /jobs/{job_id}``;
* ``updated_at`` always equals ``created_at``; ``DELETE`` is a 204 and publishes nothing;
* the download route checks, in order: job, job directory, traversal, existence, regular file;
* the admin config is served at ``/admin/config``; the newer upstream's ``/admin/pref`` routes
  only with ``admin_pref=True`` (the real server answers them with 404).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated

import anyio
from fastapi import (
    APIRouter,
    FastAPI,
    File,
    Form,
    HTTPException,
    Query,
    Request,
    UploadFile,
    params,
)
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import JsonValue

from ._authorizer import ComputeAuthorizer
from ._faults import now_ms
from ._jobs import ComputeState, current_user
from ._plugin_routes import PLUGIN_NAMES, plugin_router

__all__ = ["create_compute_app"]

Dependency = Callable[[Request], Awaitable[str | None]]


def _auth_dependency(
    state: ComputeState, authorizer: ComputeAuthorizer, *, admin: bool
) -> Dependency:
    async def authorize(request: Request) -> str | None:
        user = authorizer.check(
            request.headers.get("authorization"), guest_mode=state.guest_mode, admin=admin
        )
        _ = current_user.set(user)
        return user

    return authorize


def _not_found(job_id: str) -> HTTPException:
    return HTTPException(status_code=404, detail=f"Job {job_id} not found")


def create_compute_app(
    state: ComputeState, authorizer: ComputeAuthorizer | None = None, *, admin_pref: bool = False
) -> FastAPI:
    """Build the compute app over ``state`` (jobs, storage, workers' capability cache).

    ``admin_pref`` also serves the newer upstream's ``/admin/pref`` routes.
    """
    auth = authorizer if authorizer is not None else ComputeAuthorizer(None)
    app = FastAPI(title="Task Server", version="v1")
    user_dep = params.Depends(dependency=_auth_dependency(state, auth, admin=False))
    admin_dep = params.Depends(dependency=_auth_dependency(state, auth, admin=True))

    async def http_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        detail: JsonValue = exc.detail
        return JSONResponse({"detail": detail}, status_code=exc.status_code)

    app.add_exception_handler(HTTPException, http_error)

    @app.get("/")
    async def root() -> dict[str, JsonValue]:
        return {
            "status": "healthy",
            "service": "Task Server",
            "version": "v1",
            "guestMode": "on" if state.guest_mode else "off",
        }

    @app.get("/capabilities")
    async def capabilities() -> dict[str, JsonValue]:
        return state.capabilities_summary()

    app.include_router(plugin_router(state.submit), dependencies=[user_dep])
    extra = _extra_task_router(state, [name for name in state.tasks if name not in PLUGIN_NAMES])
    app.include_router(extra, dependencies=[user_dep])

    @app.get("/jobs/{job_id}", dependencies=[user_dep])
    async def get_job(job_id: str) -> dict[str, JsonValue]:
        state.job_reads.append((anyio.current_time(), job_id))
        delay = state.faults.take_read_delay(job_id)
        if delay > 0:
            await anyio.sleep(delay)
        job = state.jobs.get(job_id)
        if job is None:
            raise _not_found(job_id)
        return job.to_response()

    @app.delete("/jobs/{job_id}", status_code=204, dependencies=[user_dep])
    async def delete_job(job_id: str) -> None:
        if not state.delete_job(job_id):
            raise _not_found(job_id)

    @app.get("/jobs/{job_id}/files/{file_path:path}", dependencies=[user_dep])
    async def download(job_id: str, file_path: str) -> FileResponse:
        return FileResponse(
            _resolve_download(state, job_id, file_path),
            media_type="application/octet-stream",
            filename=Path(file_path).name,
        )

    @app.get("/admin/jobs/storage/size", dependencies=[admin_dep])
    async def storage_size() -> dict[str, JsonValue]:
        return state.storage_size()

    @app.delete("/admin/jobs/cleanup", dependencies=[admin_dep])
    async def cleanup(days: Annotated[int, Query(ge=0)] = 7) -> dict[str, JsonValue]:
        return state.cleanup(days)

    def config_body() -> dict[str, JsonValue]:
        return {
            "guest_mode": state.guest_mode,
            "updated_at": state.config_updated_at,
            "updated_by": state.config_updated_by,
        }

    async def get_config() -> dict[str, JsonValue]:
        return config_body()

    async def set_guest_mode(guest_mode: Annotated[bool, Form()]) -> dict[str, JsonValue]:
        state.guest_mode = guest_mode
        state.config_updated_at = now_ms()
        state.config_updated_by = current_user.get()
        return {"guest_mode": guest_mode, "message": "Configuration updated successfully"}

    for prefix in ("/admin/config", "/admin/pref") if admin_pref else ("/admin/config",):
        app.add_api_route(prefix, get_config, methods=["GET"], dependencies=[admin_dep])
        app.add_api_route(
            f"{prefix}/guest-mode", set_guest_mode, methods=["PUT"], dependencies=[admin_dep]
        )

    _ = (root, capabilities, get_job, delete_job, download, storage_size, cleanup)
    return app


def _resolve_download(state: ComputeState, job_id: str, file_path: str) -> Path:
    """The real server's checks, in its order (docs/protocol.md#downloading-job-files)."""
    if job_id not in state.jobs:
        raise _not_found(job_id)
    job_dir = state.job_dir(job_id)
    if not job_dir.is_dir():
        raise HTTPException(status_code=404, detail=f"Job directory not found for job {job_id}")
    try:
        root = job_dir.resolve()
        target = (job_dir / file_path).resolve()
    except (OSError, ValueError) as exc:
        raise HTTPException(status_code=400, detail=f"Invalid file path: {exc}") from exc
    if not target.is_relative_to(root):
        raise HTTPException(status_code=403, detail="Access denied: path traversal detected")
    if not target.exists():
        raise HTTPException(status_code=404, detail=f"File not found: {file_path}")
    if not target.is_file():
        raise HTTPException(status_code=400, detail=f"Path is not a file: {file_path}")
    return target


def _extra_task_router(state: ComputeState, names: list[str]) -> APIRouter:
    """``POST /jobs/<name>`` for test tasks beyond the nine plugins (e.g. ``generic``).

    Form fields: ``file`` (required), ``priority`` (0..10, default 5); every other text field is
    stored in ``params`` as a string.
    """
    router = APIRouter()

    def make_route(name: str) -> Callable[..., Awaitable[dict[str, JsonValue]]]:
        async def create_job(
            request: Request,
            file: Annotated[UploadFile, File()],
            priority: Annotated[int, Form(ge=0, le=10)] = 5,
        ) -> dict[str, JsonValue]:
            form = await request.form()
            params: dict[str, JsonValue] = {
                key: value
                for key, value in form.multi_items()
                if isinstance(value, str) and key not in ("file", "priority")
            }
            return await state.submit(name, file, params, priority)

        return create_job

    for name in names:
        router.add_api_route(f"/jobs/{name}", make_route(name), methods=["POST"])
    return router
