"""ComputeClient, the front door: one task group, REST to the compute service, job and worker
streams (the engine behind them: ``_engine.py``)."""

from __future__ import annotations

import logging
import math
import os
import uuid
from collections.abc import Callable, Coroutine, Iterable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import TYPE_CHECKING, Literal, Self, Unpack

import anyio
import anyio.abc

from ._callbacks import CallbackRunner, CallbackSubscription, OnComplete, OnProgress
from ._core.errors import (
    ClientClosedError,
    JobFailedError,
    JobNotFoundError,
    JobTimeoutError,
    ParameterError,
    ProtocolError,
    ServerError,
    TransportError,
    WorkerUnavailableError,
)
from ._core.groups import unwrap_group
from ._core.models import (
    CapabilitiesResponse,
    CleanupResult,
    ComputeConfig,
    JobResponse,
    JobUpdate,
    ServerInfo,
    StorageInfo,
    WorkerInfo,
)
from ._core.settings import ClientSettings, SettingsOverrides, redact_url, with_overrides
from ._core.workers import WorkerWatch
from ._engine import Engine
from ._options import SubmitOptions, job_options
from ._watch import JobWatch
from .auth import AuthProvider, NoAuthProvider
from .plugins._access import PluginAccess

if TYPE_CHECKING:
    # httpx and the HTTP layer load when a client is entered (a script that only imports the
    # library, or a CLI's --help, does not pay for them)
    import httpx

    from ._transports.http import ComputeHttp, FileArg, FormValue

__all__ = ["ClientStatistics", "ComputeClient"]

logger = logging.getLogger("cl_client")


@dataclass(frozen=True, slots=True)
class ClientStatistics:
    """A snapshot of a ComputeClient's counters, from ``client.statistics()``.

    It does not change afterwards: call ``statistics()`` again for fresh numbers.
    """

    mqtt_connected: bool
    """Whether the MQTT feed was connected."""
    mqtt_messages: int
    """Messages received on the subscribed topics."""
    malformed_messages: int
    """Messages dropped because their payload did not decode (logged as warnings)."""
    reconnects: int
    """MQTT connections lost and re-established."""
    reconciled: int
    """``GET /jobs/{id}`` requests made to check watched jobs."""
    reconcile_errors: int
    """Of those, the ones that failed (the job is checked again on its schedule)."""
    malformed_responses: int
    """HTTP answers of those checks that could not be decoded (dropped, logged)."""
    unconfirmed_terminal: int
    """Terminal MQTT updates that ``GET /jobs/{id}`` did not confirm (checked again)."""
    updates_received: int
    """Job updates received from any source (MQTT, HTTP, submissions)."""
    updates_accepted: int
    """Updates that changed a job's state and were delivered to its subscribers."""
    updates_dropped: int
    """Duplicates, out-of-order updates and updates after a terminal state."""
    watched_jobs: int
    """Jobs with at least one watch, wait or callback subscription."""
    subscriptions: int
    """Open callback subscriptions."""
    workers: int
    """Live workers known from their capability messages."""


def _some(names: Iterable[str], shown: int = 3) -> str:
    """``a, b, c and 9,997 more`` for a log line."""
    items = list(names)
    text = ", ".join(items[:shown])
    return f"{text} and {len(items) - shown:,} more" if len(items) > shown else text


class ComputeClient(PluginAccess):
    """Async client of the CL Server compute service.

    ::

        async with ComputeClient(compute_url="http://host:8002", mqtt_url="mqtt://host:1883") as c:
            job = await c.hash.compute(image="photo.jpg", algorithm="md5")
            async for update in c.watch(job.job_id):
                print(update.status, update.progress)
            digest = await c.hash.result(job.job_id)   # or: await c.hash.run("photo.jpg")

    Entering connects: it checks the server (``GET /``) and subscribes to the job events and
    worker capability topics before returning, so a server or broker that is down fails here
    with an error naming the URL. Everything in the background (the MQTT reader and its
    reconnects, the HTTP reconciler, callback drainers, worker ageing) runs in the one task group
    the client owns, and stops when the ``async with`` block ends.

    Args:
        settings: A :class:`ClientSettings`; keyword ``overrides`` (any ClientSettings field,
            see :class:`SettingsOverrides`) are applied on top of it, or on top of the defaults
            when no settings are given. A misspelt keyword or a bad value raises ParameterError.
        auth: Where request headers come from (default: no authentication).
        http_client: An ``httpx.AsyncClient`` to use instead of creating one (not closed by us).
        mqtt_backend: ``"auto"`` (aiomqtt on asyncio, paho-mqtt on trio), or force one.
        check_server: Call ``GET /`` when entering (default True).
    """

    def __init__(
        self,
        settings: ClientSettings | None = None,
        *,
        auth: AuthProvider | None = None,
        http_client: httpx.AsyncClient | None = None,
        mqtt_backend: Literal["auto", "aiomqtt", "paho"] = "auto",
        check_server: bool = True,
        **overrides: Unpack[SettingsOverrides],
    ) -> None:
        if settings is not None and not isinstance(settings, ClientSettings):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise ParameterError(
                f"settings must be a ClientSettings or None, got {type(settings).__name__}; "
                "pass URLs and other fields as keywords: ComputeClient(compute_url=...)"
            )
        if mqtt_backend not in ("auto", "aiomqtt", "paho"):
            raise ParameterError(
                f"mqtt_backend must be 'auto', 'aiomqtt' or 'paho', got {mqtt_backend!r}"
            )
        settings = with_overrides(settings, overrides)
        self._settings: ClientSettings = settings
        self._auth: AuthProvider = auth if auth is not None else NoAuthProvider()
        self._external_http = http_client
        self._check_server = check_server
        self._engine = Engine(settings, mqtt_backend)
        self._hub = self._engine.hub
        self._registry = self._engine.registry
        self._subscriptions: dict[str, CallbackSubscription] = {}
        self._callbacks = CallbackRunner()
        self._stack: AsyncExitStack | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._http_layer: ComputeHttp | None = None
        self._server_info: ServerInfo | None = None
        self._state: Literal["new", "open", "closed"] = "new"

    def __repr__(self) -> str:
        return (
            f"ComputeClient(compute_url={redact_url(self.settings.compute_url)!r}, "
            f"mqtt_url={self.settings.mqtt.url!r}, auth={self.auth!r}, state={self._state!r})"
        )

    @property
    def settings(self) -> ClientSettings:
        """The settings in use (frozen: create another client to change them)."""
        return self._settings

    @property
    def auth(self) -> AuthProvider:
        """Where request headers come from."""
        return self._auth

    @property
    def mqtt_connected(self) -> bool:
        """Whether the MQTT feed is connected right now."""
        return self._engine.mqtt_connected

    def statistics(self) -> ClientStatistics:
        """A snapshot of the client's counters (a new object each call)."""
        hub = self._hub.stats
        counters = self._engine.counters
        return ClientStatistics(
            mqtt_connected=self._engine.mqtt_connected,
            mqtt_messages=counters.mqtt_messages,
            malformed_messages=counters.malformed_messages,
            reconnects=counters.reconnects,
            reconciled=counters.reconciled,
            reconcile_errors=counters.reconcile_errors,
            malformed_responses=counters.malformed_responses,
            unconfirmed_terminal=counters.unconfirmed_terminal,
            updates_received=hub.published,
            updates_accepted=hub.accepted,
            updates_dropped=hub.dropped,
            watched_jobs=self._hub.watched_count(),
            subscriptions=len(self._subscriptions),
            workers=len(self._registry.workers),
        )

    # -- lifecycle ---------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        if self._state != "new":
            raise ClientClosedError("a ComputeClient can be entered only once; create a new one")
        self._state = "open"
        stack = self._stack = AsyncExitStack()
        try:
            http = self._external_http
            if http is None:
                import httpx

                timeout = httpx.Timeout(
                    self.settings.http_timeout, connect=self.settings.connect_timeout
                )
                http = await stack.enter_async_context(httpx.AsyncClient(timeout=timeout))
            from ._transports.http import ComputeHttp

            self._http_layer = ComputeHttp(self.settings, self.auth, http)
            if self._check_server:
                self._server_info = await self._http_layer.server_info()
            self._tg = await stack.enter_async_context(anyio.create_task_group())
            await self._engine.start(self._tg, self._http_layer.get_job)
            self._tg.start_soon(self._callbacks.run, name="cl-client callbacks")
        except BaseException as exc:
            self._state = "closed"
            if self._tg is not None:
                # The task group must be exited in the cancel scope it was entered in: a new
                # (shielding) scope around its exit corrupts the scope stack. Shield its own.
                self._tg.cancel_scope.shield = True
                self._tg.cancel_scope.cancel()
            try:
                await stack.aclose()
            except BaseException as close_exc:  # pragma: no cover - secondary failure
                logger.debug("error while cleaning up a failed connect: %r", close_exc)
            raise unwrap_group(exc) from None
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._close(exc_type, exc, tb)

    async def aclose(self) -> None:
        """Stop every background task and end every watch and subscription (idempotent).

        ``async with`` calls it; call it yourself only for a client entered by hand.
        """
        await self._close(None, None, None)

    async def _close(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._state != "open":
            self._state = "closed"
            return
        self._state = "closed"
        subscriptions = list(self._subscriptions.values())
        self._subscriptions.clear()
        for sub in subscriptions:
            sub.cancel()
        if subscriptions:
            # One line for all of them: a client closed with 10,000 open subscriptions is one
            # event, not 10,000.
            logger.warning(
                "the ComputeClient was closed with %d open subscription(s) (jobs %s); their "
                "callbacks will not be called again",
                len(subscriptions),
                _some(sub.job_id for sub in subscriptions),
            )
        self._hub.fail_all(ClientClosedError("the ComputeClient was closed"))
        self._registry.end_watches()
        if self._tg is not None:
            # Exited in the scope it was entered in (see __aenter__); its own scope is shielded
            # so an outer cancellation does not interrupt the teardown of the background tasks.
            self._tg.cancel_scope.shield = True
            self._tg.cancel_scope.cancel()
        stack = self._stack
        assert stack is not None
        try:
            await stack.__aexit__(exc_type, exc, tb)
        except BaseExceptionGroup as group:
            raise unwrap_group(group) from None

    @property
    def _http(self) -> ComputeHttp:
        if self._state != "open" or self._http_layer is None:
            raise ClientClosedError(
                "the ComputeClient is not open: use it as `async with ComputeClient(...) as client`"
            )
        return self._http_layer

    # -- REST --------------------------------------------------------------------------------
    @property
    def server(self) -> ServerInfo | None:
        """What ``GET /`` said when the client connected (None with ``check_server=False``)."""
        return self._server_info

    async def server_info(self) -> ServerInfo:
        """``GET /``: health and auth mode (``info.auth_required``)."""
        return await self._http.server_info()

    async def get_capabilities(self) -> CapabilitiesResponse:
        """``GET /capabilities``: idle worker counts per capability (may lag after a restart)."""
        return await self._http.capabilities()

    async def get_job(self, job_id: str) -> JobResponse:
        """``GET /jobs/{job_id}``. Raises JobNotFoundError for an unknown job."""
        job = await self._http.get_job(job_id)
        self._hub.publish(JobUpdate.from_job(job), anyio.current_time())
        return job

    async def delete_job(self, job_id: str) -> None:
        """``DELETE /jobs/{job_id}``: remove the job and its files.

        Watches and subscriptions of the job end (with JobNotFoundError). An unknown job raises
        JobNotFoundError.
        """
        await self._http.delete_job(job_id)
        self._hub.fail(job_id, JobNotFoundError(job_id, f"job {job_id} was deleted"))

    async def submit(
        self,
        task_type: str,
        file: FileArg | None,
        params: Mapping[str, FormValue] | None = None,
        **options: Unpack[SubmitOptions],
    ) -> JobResponse:
        """Upload ``file`` (streamed from disk) to ``POST /jobs/{task_type}`` with form ``params``.

        The generic submission; the plugins' methods (``client.hash.compute(...)``) are typed
        forms of it and share its contract and its options (:class:`SubmitOptions`:
        ``priority``, ``wait``, ``timeout``, ``on_progress``, ``on_complete``).

        ``file`` goes in the multipart part ``file``; None submits the form alone (for plugins
        that take no file). None values in ``params`` are left out; booleans are sent as
        ``true``/``false``. A missing or unreadable file, an unknown option or a bad value
        raises ParameterError before anything is sent.

        Returns the job as submitted (``job_id``, ``task_type``, ``status``, ``priority``; no
        further request is made), or with ``wait=True`` the final JobResponse, as
        :meth:`wait` returns it (JobFailedError if the job failed, JobTimeoutError after
        ``timeout``). The job's state is cached and the callbacks registered before anything
        else can run, so nothing published about the job is missed.
        """
        opts = job_options(options)
        created = await self._http.submit(task_type, file, params, opts.priority)
        self._engine.schedule.remember_task_type(created.job_id, created.task_type or task_type)
        self._hub.publish(
            JobUpdate(job_id=created.job_id, status=created.status, source="submit"),
            anyio.current_time(),
        )
        if opts.on_progress is not None or opts.on_complete is not None:
            self.subscribe_job_updates(created.job_id, opts.on_progress, opts.on_complete)
        if opts.wait:
            return await self._wait_within(created.job_id, opts.timeout)
        return JobResponse(
            job_id=created.job_id,
            task_type=created.task_type or task_type,
            status=created.status,
            priority=opts.priority,
        )

    async def _wait_within(self, job_id: str, timeout: float | None) -> JobResponse:
        """:meth:`wait`, raising JobTimeoutError after ``timeout`` seconds (None: no limit)."""
        with anyio.move_on_after(math.inf if timeout is None else timeout):
            return await self.wait(job_id)
        assert timeout is not None
        latest = self._hub.latest(job_id)
        raise JobTimeoutError(job_id, timeout, latest.status if latest is not None else None)

    def latest(self, job_id: str) -> JobUpdate | None:
        """The latest state of a job this client has seen (None if it knows nothing of it)."""
        return self._hub.latest(job_id)

    async def read_job_file(self, job_id: str, file_path: str) -> bytes:
        """The bytes of a small job file (``output/hash.json``, an ``.npy`` embedding...)."""
        return await self._http.read_file(job_id, file_path)

    async def download_job_file(
        self,
        job_id: str,
        file_path: str,
        dest: str | os.PathLike[str],
        *,
        overwrite: bool = False,
    ) -> Path:
        """Download ``/jobs/{job_id}/files/{file_path}`` to ``dest``.

        ``dest`` is a file path, or a directory (existing, or named with a trailing slash and
        then created) in which the file keeps its base name. The
        data streams into a temporary file beside the target, renamed into place when complete;
        an existing target is kept unless ``overwrite`` (DownloadError).
        """
        self._http.file_path(job_id, file_path)  # a bad path fails before anything else
        from ._transports.http import local_errors, local_path, safe_join

        target = local_path(dest, "the download target")
        with local_errors(target):
            if os.fspath(dest).endswith(("/", os.sep)):  # "out/": a directory, created if needed
                await anyio.Path(target).mkdir(parents=True, exist_ok=True)
            is_dir = await anyio.Path(target).is_dir()
        if is_dir:
            target = safe_join(target, PurePosixPath(file_path.strip("/")).name)
        return await self._http.download(job_id, file_path, target, overwrite=overwrite)

    async def download_job_files(
        self,
        job_id: str,
        file_paths: Iterable[str],
        directory: str | os.PathLike[str],
        *,
        overwrite: bool = False,
    ) -> list[Path]:
        """Download several job files into ``directory``, keeping their relative paths.

        A path that would land outside ``directory`` is refused before anything is fetched.
        """
        from ._transports.http import local_path, safe_join

        root = local_path(directory, "the directory")
        targets = [(path, safe_join(root, path)) for path in file_paths]
        for path, _ in targets:
            self._http.file_path(job_id, path)  # a bad path fails before anything else
        return [
            await self._http.download(job_id, path, target, overwrite=overwrite)
            for path, target in targets
        ]

    # -- admin -------------------------------------------------------------------------------
    async def get_config(self) -> ComputeConfig:
        """Admin: the compute config (``/admin/config``, or ``/admin/pref`` on newer servers)."""
        return await self._http.get_config()

    async def set_guest_mode(self, enabled: bool) -> ComputeConfig:
        """Admin: switch guest mode on (no auth) or off (tokens required)."""
        return await self._http.set_guest_mode(enabled)

    async def storage_info(self) -> StorageInfo:
        """Admin: total size and count of job directories."""
        return await self._http.storage()

    async def cleanup(self, days: int = 7) -> CleanupResult:
        """Admin: delete jobs older than ``days``."""
        return await self._http.cleanup(days)

    # -- job updates: iterator, callbacks, waiting ---------------------------------------------
    def watch(self, job_id: str) -> JobWatch:
        """Follow one job: an async iterator (and async context manager) of JobUpdate.

        Registered immediately, primed with the job's latest known state, ending after the
        terminal update (``completed`` or ``error``). A job that fails without an MQTT event is
        still ended by HTTP reconciliation: within a second of its worker announcing that it
        went idle, else within ``settings.reconcile_interval`` of its last news. A job the
        client knows nothing of is checked at once.
        """
        self._require_open()
        return JobWatch(self._hub, job_id, now=anyio.current_time())

    def subscribe_job_updates(
        self,
        job_id: str,
        on_progress: OnProgress | None = None,
        on_complete: OnComplete | None = None,
    ) -> str:
        """Call ``on_progress(update)`` for every update (as ``watch`` yields them) and
        ``on_complete(job)`` once with the final JobResponse. Callables may be sync or async;
        one that raises is logged and harms nobody else. Returns a subscription id for
        :meth:`unsubscribe`. The subscription ends by itself after the terminal update.
        """
        self._require_open()
        subscription_id = uuid.uuid4().hex
        subscription = CallbackSubscription(
            subscription_id,
            job_id,
            on_progress=on_progress,
            on_complete=on_complete,
            spawn=self._start_task,
            resolve=self._final_job,
            finished=self._subscription_finished,
            max_pending=self.settings.callback_queue_size,
            schedule=self._schedule_callbacks,
        )
        self._subscriptions[subscription_id] = subscription
        self._hub.add(job_id, subscription, anyio.current_time())
        return subscription_id

    def unsubscribe(self, subscription_id: str) -> bool:
        """Stop a subscription. Returns False if it was unknown or already finished."""
        subscription = self._subscriptions.pop(subscription_id, None)
        if subscription is None:
            return False
        subscription.cancel()
        self._hub.remove(subscription.job_id, subscription)
        return True

    def _subscription_finished(self, subscription: CallbackSubscription) -> None:
        self._subscriptions.pop(subscription.subscription_id, None)
        self._hub.remove(subscription.job_id, subscription)

    def _schedule_callbacks(self, subscription: CallbackSubscription) -> None:
        if self._state == "open":
            self._callbacks.schedule(subscription)

    def _start_task(self, fn: Callable[[], Coroutine[object, object, None]]) -> None:
        if self._tg is not None and self._state == "open":
            self._tg.start_soon(fn)

    async def _final_job(self, update: JobUpdate) -> JobResponse:
        """The final JobResponse after a terminal update, with a terminal status over HTTP.

        An update that came over HTTP already holds it. A terminal state that only MQTT reported
        is not trusted: the job is fetched, and fetched again (``poll_interval`` with backoff)
        until the server's own status is terminal. Unreachable servers and broken answers are
        retried the same way; other API errors (404: the job is gone) are raised.
        """
        if update.job is not None and update.job.is_terminal:
            return update.job
        cached = self._hub.latest(update.job_id)
        if cached is not None and cached.job is not None and cached.job.is_terminal:
            return cached.job
        settings = self.settings
        interval = settings.poll_interval
        doubted = False
        while True:
            try:
                job = await self._http.get_job(update.job_id)
            except (TransportError, ServerError, ProtocolError) as exc:
                logger.warning(
                    "could not confirm the final state of job %s (%s); retrying in %.2g s",
                    update.job_id,
                    exc,
                    interval,
                )
            else:
                if job.is_terminal:
                    self._hub.publish(JobUpdate.from_job(job), anyio.current_time())
                    return job
                if not doubted:
                    doubted = True
                    self._engine.counters.unconfirmed_terminal += 1
                    logger.warning(
                        "job %s: MQTT said %r but the server says %r; checking again",
                        update.job_id,
                        update.status,
                        job.status,
                    )
            await anyio.sleep(interval)
            interval = min(interval * settings.poll_backoff, settings.poll_max_interval)

    async def wait(self, job_id: str, *, raise_on_error: bool = True) -> JobResponse:
        """Wait for the job to finish and return its final JobResponse (fetched over HTTP).

        The answer is the server's: a terminal event over MQTT is confirmed with
        ``GET /jobs/{id}`` and, until the server agrees, checked again with ``poll_interval``
        backoff. Raises JobFailedError if it ended in ``error`` (unless
        ``raise_on_error=False``), NotFoundError if the job is gone. Put a deadline around it
        with ``anyio.fail_after``.
        """
        async with self.watch(job_id) as watch:
            async for update in watch:
                if update.is_terminal:
                    job = await self._final_job(update)
                    if job.is_failed and raise_on_error:
                        raise JobFailedError(job)
                    return job
        raise ClientClosedError(f"stopped waiting for job {job_id}: the client was closed")

    async def wait_for_job(
        self,
        job_id: str,
        poll_interval: float | None = None,
        timeout: float | None = None,
        *,
        raise_on_error: bool = True,
    ) -> JobResponse:
        """Poll ``GET /jobs/{job_id}`` with exponential backoff until the job finishes.

        The secondary workflow, for when MQTT is not wanted. Raises JobTimeoutError after
        ``timeout`` seconds and JobFailedError if the job ended in ``error``.
        """
        settings = self.settings
        interval = poll_interval if poll_interval is not None else settings.poll_interval
        last_status: str | None = None
        with anyio.move_on_after(timeout if timeout is not None else float("inf")):
            while True:
                job = await self.get_job(job_id)
                last_status = job.status
                if job.is_terminal:
                    if job.is_failed and raise_on_error:
                        raise JobFailedError(job)
                    return job
                await anyio.sleep(interval)
                interval = min(interval * settings.poll_backoff, settings.poll_max_interval)
        assert timeout is not None
        raise JobTimeoutError(job_id, timeout, last_status)

    def _require_open(self) -> None:
        if self._state != "open":
            raise ClientClosedError(
                "the ComputeClient is not open: use it as `async with ComputeClient(...) as client`"
            )

    # -- workers -----------------------------------------------------------------------------
    @property
    def workers(self) -> dict[str, WorkerInfo]:
        """A snapshot of the live workers, by worker id."""
        return self._registry.workers

    def watch_workers(self) -> WorkerWatch:
        """Worker changes as WorkerEvent: one per known worker first, then each change
        (``event.info`` None when a worker leaves or ages out)."""
        self._require_open()
        return WorkerWatch(self._registry, self.settings.callback_queue_size)

    async def wait_for_workers(
        self, capabilities: Iterable[str], *, timeout: float = 30.0
    ) -> dict[str, WorkerInfo]:
        """Wait until live workers together offer every capability in ``capabilities``.

        Returns the live workers by id. With ``mqtt_enabled=False`` it polls ``GET /capabilities``
        instead and returns an empty dict (worker ids are unknown without MQTT). Raises
        WorkerUnavailableError after ``timeout`` seconds, naming what is missing and what is
        available.
        """
        needed = list(capabilities)
        self._require_open()
        if not self.settings.mqtt_enabled:
            return await self._poll_for_workers(needed, timeout)
        with anyio.move_on_after(timeout):
            while self._registry.missing(needed):
                await self._registry.wait_changed()
            return self._registry.workers
        raise WorkerUnavailableError(
            self._registry.missing(needed), sorted(self._registry.capabilities())
        )

    async def _poll_for_workers(self, needed: list[str], timeout: float) -> dict[str, WorkerInfo]:
        # Without MQTT, GET /capabilities is all there is (a busy worker's capability maps to 0
        # but is still listed). Worker ids are not known, so the result is empty.
        available: set[str] = set()
        interval = self.settings.poll_interval
        with anyio.move_on_after(timeout):
            while True:
                available = set((await self._http.capabilities()).capabilities)
                if all(cap in available for cap in needed):
                    return {}
                await anyio.sleep(interval)
                interval = min(
                    interval * self.settings.poll_backoff, self.settings.poll_max_interval
                )
        raise WorkerUnavailableError([c for c in needed if c not in available], sorted(available))
