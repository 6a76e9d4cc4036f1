"""``LocalComputeService``: the local compute service (HTTP, MQTT, workers) as a context manager.

::

    async with LocalComputeService() as svc:          # embedded broker, temp storage, 1 worker
        svc.compute_url    # "http://127.0.0.1:<port>"
        svc.mqtt_url       # "mqtt://127.0.0.1:<port>"
        svc.faults.drop_events("completed")
        await svc.kill_worker(svc.worker().worker_id)

Real HTTP over loopback (hypercorn, on asyncio or trio) and real MQTT through a real broker: the
embedded one by default, or any broker given by ``mqtt_url`` (e.g. mosquitto).
"""

from __future__ import annotations

import logging
import secrets
import shutil
import tempfile
from collections.abc import AsyncGenerator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Self, Unpack

import anyio
from anyio.abc import TaskGroup

from ..._core.errors import ParameterError
from ..._core.groups import unwrap_group
from ..._core.settings import (
    ClientSettings,
    SettingsOverrides,
    parse_mqtt_url,
    with_overrides,
)
from ..._transports.mqtt.connection import MqttMessage
from .._serve import serve_asgi
from ._app import create_compute_app
from ._authorizer import ComputeAuthorizer
from ._faults import EventMessage, Faults, JobRecord, now_ms
from ._jobs import ComputeState
from ._mqtt_link import MqttLink
from ._plugin_base import TaskFn
from ._worker import LocalWorker

if TYPE_CHECKING:
    from ..broker._broker import EmbeddedBroker

__all__ = ["LocalComputeService"]

_LOG = logging.getLogger("cl_client.testing.compute")

WorkersSpec = int | Sequence[str] | Mapping[str, Sequence[str]]


class LocalComputeService(anyio.AsyncContextManagerMixin):
    """A local compute service speaking the real protocol: routes, events, capability messages.

    Arguments:
        mqtt_url: an external broker (e.g. ``mqtt://127.0.0.1:1883``); None starts an
            :class:`~cl_client.testing.EmbeddedBroker` on a free loopback port.
        storage_dir: where ``jobs/<id>/`` live; None uses a temporary directory removed at exit.
        workers: how many workers (ids generated), a list of worker ids, or a mapping of worker
            id to capabilities.
        capabilities: the task types workers offer (default: every task in ``tasks``).
        guest_mode: the initial auth mode (True: no token needed, the real default).
        public_key_pem: the auth service's public key, to verify tokens when guest mode is off.
        tasks: task type -> task function (default: the nine plugins). Task types that are not
            plugins get a ``POST /jobs/<name>`` route taking ``file``, ``priority`` and free text
            fields (see :func:`~cl_client.testing.generic_task`).
        worker_poll_interval: None (the default): a worker picks a job up the moment it is
            submitted, so tests run fast. A number: workers keep the real worker's timing
            (``WORKER_POLL_INTERVAL``; the real default is 5.0): they look for work only every
            that many seconds, not when a job arrives, look again at once after finishing a
            job, and re-announce their capabilities (``idle_count`` 0 then 1) on every poll.
            Use it to make your own tests meet the race a real server has between a submission
            and the first update (``worker_poll_interval=5.0`` is the real thing).
        heartbeat_interval: the capability re-announce period: seconds between heartbeats (the
            real ``MQTT_HEARTBEAT_INTERVAL``, 30 s by default).
        announce_each_poll: publish ``idle_count`` 0 then 1 on every idle poll; None (the
            default) does so exactly when ``worker_poll_interval`` is set.
        admin_pref: also serve ``GET /admin/pref`` and ``PUT /admin/pref/guest-mode``, the admin
            routes of the newer upstream compute service. The server this service follows
            answers them with 404, so they are off by default.
        announce_idle_after_job: workers publish ``idle_count`` 1 right after each job, success
            or failure, as the real worker does (False: they stay quiet until their next
            announcement; ``worker.announce_idle_after_job`` changes one worker).
        worker_id_key: ``"id"`` (this server) or ``"worker_id"`` (newer upstream).
        reannounce_on_reconnect: workers publish their capability message again after the
            service reconnects to the broker (the real ones wait for the next heartbeat).
        clear_stale_on_exit: at exit, remove the retained messages that killed workers left.
    """

    def __init__(
        self,
        mqtt_url: str | None = None,
        *,
        storage_dir: str | Path | None = None,
        workers: WorkersSpec = 1,
        capabilities: Sequence[str] | None = None,
        guest_mode: bool = True,
        public_key_pem: str | None = None,
        events_topic: str = "inference/events",
        worker_topic_prefix: str = "inference/workers",
        tasks: Mapping[str, TaskFn] | None = None,
        worker_poll_interval: float | None = None,
        heartbeat_interval: float = 30.0,
        announce_each_poll: bool | None = None,
        announce_idle_after_job: bool = True,
        admin_pref: bool = False,
        worker_id_key: Literal["id", "worker_id"] = "id",
        reannounce_on_reconnect: bool = False,
        clear_stale_on_exit: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._mqtt_url_arg = mqtt_url
        self._storage_arg = Path(storage_dir) if storage_dir is not None else None
        self._workers_spec: WorkersSpec = workers
        self._capabilities = list(capabilities) if capabilities is not None else None
        self._guest_mode = guest_mode
        self._public_key_pem = public_key_pem
        self.events_topic = events_topic
        self.worker_topic_prefix: str = worker_topic_prefix.rstrip("/")
        self._tasks = dict(tasks) if tasks is not None else None
        if worker_poll_interval is not None and not worker_poll_interval > 0:
            raise ParameterError(
                f"worker_poll_interval must be > 0 or None, got {worker_poll_interval!r}"
            )
        self.worker_poll_interval = worker_poll_interval
        self.heartbeat_interval = heartbeat_interval
        self.announce_each_poll: bool = (
            announce_each_poll
            if announce_each_poll is not None
            else worker_poll_interval is not None
        )
        self.admin_pref = admin_pref
        self.announce_idle_after_job = announce_idle_after_job
        self.worker_id_key: Literal["id", "worker_id"] = worker_id_key
        self.reannounce_on_reconnect = reannounce_on_reconnect
        self.clear_stale_on_exit = clear_stale_on_exit
        self._host = host
        self._port = port
        self._id_token = secrets.token_hex(3)
        self._stack: AsyncExitStack | None = None
        self._state: ComputeState | None = None
        self._link: MqttLink | None = None
        self._tg: TaskGroup | None = None
        self._broker: EmbeddedBroker | None = None
        self._compute_url: str | None = None
        self._mqtt_url: str | None = None
        self._storage_dir: Path | None = None
        self._workers: dict[str, LocalWorker] = {}

    def __repr__(self) -> str:
        return (
            f"LocalComputeService(compute_url={self._compute_url!r}, mqtt_url={self._mqtt_url!r})"
        )

    # -- lifecycle ---------------------------------------------------------------------------

    @asynccontextmanager
    async def __asynccontextmanager__(self) -> AsyncGenerator[Self]:
        if self._stack is not None:  # another task is entering it right now
            raise RuntimeError("LocalComputeService is already running")
        try:
            async with AsyncExitStack() as stack:
                self._stack = stack
                try:
                    await self._start(stack)
                    yield self
                finally:
                    self._stack = None
        except BaseExceptionGroup as group:
            raise unwrap_group(group) from None

    async def _start(self, stack: AsyncExitStack) -> None:
        if self._mqtt_url_arg is None:
            from ..broker._broker import EmbeddedBroker

            broker = await stack.enter_async_context(EmbeddedBroker(host=self._host))
            self._broker = broker
            self._mqtt_url = broker.url
        else:
            self._mqtt_url = self._mqtt_url_arg
        if self._storage_arg is None:
            temp = Path(tempfile.mkdtemp(prefix="cl-local-compute-"))
            _ = stack.callback(shutil.rmtree, temp, ignore_errors=True)
            self._storage_dir = temp
        else:
            self._storage_dir = self._storage_arg
        tasks = self._tasks
        if tasks is None:
            from ._plugin_tasks import TASKS

            tasks = dict(TASKS)
        state = ComputeState(
            self._storage_dir,
            tasks=tasks,
            guest_mode=self._guest_mode,
            events_topic=self.events_topic,
            worker_topic_prefix=self.worker_topic_prefix,
        )
        self._state = state

        def on_message(message: MqttMessage) -> None:
            state.note_capability_message(message.topic, message.payload)

        link = MqttLink(
            parse_mqtt_url(self._mqtt_url),
            subscriptions=[f"{self.worker_topic_prefix}/+"],
            on_message=on_message,
        )
        link.on_reconnect = self._on_reconnect
        self._link = link
        state.publisher = link
        tg = await stack.enter_async_context(anyio.create_task_group())
        self._tg = tg
        _ = stack.push_async_callback(self._shutdown)
        await tg.start(link.run)
        app = create_compute_app(
            state, ComputeAuthorizer(self._public_key_pem), admin_pref=self.admin_pref
        )
        self._compute_url = await stack.enter_async_context(
            serve_asgi(app, host=self._host, port=self._port)
        )
        for worker_id, caps in self._initial_workers(list(tasks)):
            _ = await self.add_worker(worker_id, caps, wait_visible=False)
        await self.wait_for_workers_visible()

    def _initial_workers(self, task_names: list[str]) -> list[tuple[str, list[str]]]:
        default_caps = self._capabilities if self._capabilities is not None else task_names
        spec = self._workers_spec
        if isinstance(spec, int):
            return [(f"worker-{self._id_token}-{i + 1}", default_caps) for i in range(spec)]
        if isinstance(spec, Mapping):
            return [(wid, list(caps)) for wid, caps in spec.items()]
        return [(wid, default_caps) for wid in spec]

    async def _shutdown(self) -> None:
        """Stop workers gracefully (empty retained payloads), then drop the broker link."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(10):
            for worker in list(self._workers.values()):
                await worker.stop(finish_job=False)
            if self.clear_stale_on_exit and self._broker is None and self._state is not None:
                for worker in self._workers.values():
                    if worker.status == "killed":
                        await self._state.publish(worker.topic, b"", qos=1, retain=True)
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    def _on_reconnect(self) -> None:
        if self.reannounce_on_reconnect and self._tg is not None:
            for worker in self._workers.values():
                if worker.status == "running":
                    self._tg.start_soon(worker.announce)

    # -- where things are --------------------------------------------------------------------

    def _require_state(self) -> ComputeState:
        if self._state is None:
            raise RuntimeError("LocalComputeService is not running; use 'async with'")
        return self._state

    @property
    def compute_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        if self._compute_url is None:
            raise RuntimeError("LocalComputeService is not running; use 'async with'")
        return self._compute_url

    @property
    def mqtt_url(self) -> str:
        """The broker's URL (the embedded broker's, or the one given)."""
        if self._mqtt_url is None:
            raise RuntimeError("LocalComputeService is not running; use 'async with'")
        return self._mqtt_url

    @property
    def storage_dir(self) -> Path:
        if self._storage_dir is None:
            raise RuntimeError("LocalComputeService is not running; use 'async with'")
        return self._storage_dir

    @property
    def broker(self) -> EmbeddedBroker | None:
        """The embedded broker, or None when an external one is used."""
        return self._broker

    @property
    def state(self) -> ComputeState:
        """The shared job store (jobs, capability cache, published events)."""
        return self._require_state()

    @property
    def faults(self) -> Faults:
        """The fault switches (latency, failures, dropped/duplicated/reordered events, slow
        ``GET /jobs/{id}`` answers)."""
        return self._require_state().faults

    @property
    def published_events(self) -> list[EventMessage]:
        """Every job event published so far, in order (after the event switches)."""
        return list(self._require_state().published_events)

    @property
    def job_reads(self) -> list[tuple[float, str]]:
        """Every ``GET /jobs/{id}`` received so far: (``anyio.current_time()``, job id)."""
        return list(self._require_state().job_reads)

    @property
    def guest_mode(self) -> bool:
        return self._require_state().guest_mode

    @guest_mode.setter
    def guest_mode(self, value: bool) -> None:
        self._require_state().guest_mode = value

    def settings(self, **overrides: Unpack[SettingsOverrides]) -> ClientSettings:
        """Client settings pointing at this service (URLs and topics); keyword ``overrides`` of
        any other ClientSettings field apply on top (ParameterError for a bad one)."""
        values: dict[str, object] = {
            "compute_url": self.compute_url,
            "mqtt_url": self.mqtt_url,
            "job_events_topic": self.events_topic,
            "worker_topic_prefix": self.worker_topic_prefix,
        }
        values.update(overrides)
        return with_overrides(None, values)

    def job(self, job_id: str) -> JobRecord:
        """The stored job (KeyError if unknown)."""
        return self._require_state().jobs[job_id]

    # -- workers -----------------------------------------------------------------------------

    @property
    def workers(self) -> dict[str, LocalWorker]:
        """Every worker started, by id (stopped and killed ones included)."""
        return dict(self._workers)

    def worker(self, worker_id: str | None = None) -> LocalWorker:
        """A worker by id; without an id, the first one started."""
        if worker_id is None:
            if not self._workers:
                raise LookupError("this service has no workers")
            return next(iter(self._workers.values()))
        return self._workers[worker_id]

    async def add_worker(
        self,
        worker_id: str | None = None,
        capabilities: Sequence[str] | None = None,
        *,
        wait_visible: bool = True,
    ) -> LocalWorker:
        """Start a worker; it announces itself (retained) before this returns."""
        state = self._require_state()
        if self._tg is None:  # pragma: no cover - state implies a task group
            raise RuntimeError("LocalComputeService is not running")
        if worker_id is None:
            worker_id = f"worker-{self._id_token}-{len(self._workers) + 1}"
        old = self._workers.get(worker_id)
        if old is not None and old.status in ("starting", "running"):
            raise ValueError(f"worker {worker_id!r} is already running")
        if capabilities is None:
            capabilities = (
                self._capabilities if self._capabilities is not None else list(state.tasks)
            )
        worker = LocalWorker(
            state,
            worker_id,
            capabilities,
            poll_interval=self.worker_poll_interval,
            heartbeat_interval=self.heartbeat_interval,
            announce_each_poll=self.announce_each_poll,
            announce_idle_after_job=self.announce_idle_after_job,
            id_key=self.worker_id_key,
        )
        self._workers[worker_id] = worker
        await self._tg.start(worker.run)
        if wait_visible:
            await self.wait_for_workers_visible()
        return worker

    async def stop_worker(self, worker_id: str, *, finish_job: bool = True) -> None:
        """Graceful stop (SIGTERM): the worker publishes an empty retained payload."""
        await self._workers[worker_id].stop(finish_job=finish_job)

    async def kill_worker(self, worker_id: str) -> None:
        """``kill -9``: the worker vanishes, its stale retained message stays."""
        await self._workers[worker_id].kill()

    def pause_workers(self) -> None:
        """No worker claims new jobs until ``resume_workers()`` (queued jobs stay queued)."""
        for worker in self._workers.values():
            worker.pause()

    def resume_workers(self) -> None:
        for worker in self._workers.values():
            worker.resume()

    async def wait_for_workers_visible(self, timeout: float = 5.0) -> None:
        """Wait until ``GET /capabilities`` counts every running worker (their messages made the
        round trip through the broker)."""
        state = self._require_state()
        with anyio.fail_after(timeout):
            while any(
                w.status == "running" and w.worker_id not in state.workers_seen
                for w in self._workers.values()
            ):
                await state.workers_seen_signal.wait()

    # -- broker and raw MQTT -----------------------------------------------------------------

    def _require_broker(self) -> EmbeddedBroker:
        if self._broker is None:
            raise RuntimeError(
                "the service uses an external broker: restart it with your own tools"
            )
        return self._broker

    async def restart_broker(self, *, keep_retained: bool = True) -> None:
        """Restart the embedded broker (every connection drops; the service reconnects)."""
        await self._require_broker().restart(keep_retained=keep_retained)

    async def stop_broker(self) -> None:
        """Stop the embedded broker (until ``start_broker()``)."""
        await self._require_broker().stop()

    async def start_broker(self) -> None:
        await self._require_broker().start()

    @property
    def broker_connected(self) -> bool:
        """Whether the service's own MQTT connection is up."""
        return self._link is not None and self._link.connected

    @property
    def pending_publishes(self) -> int:
        """Messages the service published while the broker was away, not yet delivered."""
        return self._link.pending if self._link is not None else 0

    async def wait_for_broker_connection(self, timeout: float = 5.0) -> None:
        """Wait until the service is connected to the broker again (after a restart)."""
        with anyio.fail_after(timeout):
            while self._link is not None and not self._link.connected:
                await self._link.changed.wait()

    async def publish_raw(
        self,
        payload: bytes | str,
        *,
        topic: str | None = None,
        qos: int = 1,
        retain: bool = False,
    ) -> None:
        """Publish anything (e.g. a malformed payload) on ``topic`` (default: the events topic)."""
        state = self._require_state()
        await state.publish(topic or state.events_topic, payload, qos=qos, retain=retain)

    async def publish_event(
        self,
        job_id: str,
        event_type: str,
        *,
        progress: int = 0,
        timestamp: int | None = None,
    ) -> None:
        """Publish a well-formed job event of your choice (no fault switches applied)."""
        event = EventMessage(job_id, event_type, timestamp or now_ms(), progress)
        await self._require_state().send_event(event)

    async def release_held_events(self) -> None:
        """Publish the events a ``faults.reorder_events`` switch still holds."""
        await self._require_state().release_held_events()
