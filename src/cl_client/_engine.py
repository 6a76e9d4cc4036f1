"""The engine behind ComputeClient: the MQTT feed, HTTP reconciliation and worker ageing.

It owns the pure core's state (the job hub, the worker registry, the reconcile schedule) and
runs the three background loops that feed it, in the client's task group:

* the **feed**: one MQTT connection (reconnecting with backoff) whose messages are decoded once
  and published to the hub or the worker registry; a malformed message is counted and logged
  (at most one WARNING a second) and harms nobody;
* the **reconciler**: ``GET /jobs/{id}`` for watched jobs on the schedule of
  :mod:`cl_client._core.reconcile` (MQTT is the fast path, not the guarantee: the real server
  publishes nothing when a job fails, see ``docs/protocol.md``);
* **worker ageing**: a worker silent for ``worker_ttl`` seconds is forgotten.

The front doors (``ComputeClient``, watches, callback subscriptions) read the hub and registry;
nothing here knows about them.
"""

from __future__ import annotations

import functools
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

import anyio
import anyio.abc

from ._core.backoff import Backoff
from ._core.errors import ClClientError, MqttError, NotFoundError, ProtocolError
from ._core.hub import JobHub, JobInterest
from ._core.mailbox import Wakeup
from ._core.models import JobResponse, JobUpdate
from ._core.payloads import decode_job_event, decode_job_status, decode_worker, excerpt, topic_tail
from ._core.reconcile import ReconcileSchedule, SchedulePolicy
from ._core.settings import ClientSettings
from ._core.workers import WorkerRegistry
from ._transports.mqtt.connection import MqttMessage, connect_mqtt, loop_clock

__all__ = ["Engine", "EngineCounters", "Reconciler"]

logger = logging.getLogger("cl_client")

GetJob = Callable[[str], Awaitable[JobResponse]]


@dataclass
class EngineCounters:
    """The engine's running counters (the hub keeps its own); see ``ClientStatistics``."""

    mqtt_messages: int = 0
    malformed_messages: int = 0
    """MQTT messages dropped because they could not be decoded (logged with an excerpt)."""
    malformed_responses: int = 0
    """HTTP answers the reconciler dropped because they could not be decoded."""
    reconnects: int = 0
    reconciled: int = 0
    reconcile_errors: int = 0
    """Reconcile requests that failed (the job is checked again on a later round)."""
    unconfirmed_terminal: int = 0
    """Terminal MQTT updates that ``GET /jobs/{id}`` did not confirm (re-checked)."""


def now_ms() -> int:
    """Wall-clock milliseconds, the clock of worker timestamps."""
    return int(time.time() * 1000)


class Engine:
    """The hub, the worker registry and the reconcile schedule, and the loops that feed them."""

    def __init__(
        self, settings: ClientSettings, mqtt_backend: Literal["auto", "aiomqtt", "paho"]
    ) -> None:
        self.settings: ClientSettings = settings
        self.hub: JobHub = JobHub(settings.job_cache_size)
        self.registry: WorkerRegistry = WorkerRegistry(settings.worker_ttl)
        self.schedule: ReconcileSchedule = ReconcileSchedule(
            self.hub,
            SchedulePolicy.from_settings(settings),
            task_type_memory=settings.job_cache_size,
        )
        self.counters: EngineCounters = EngineCounters()
        self.mqtt_connected: bool = False
        self._mqtt_backend: Literal["auto", "aiomqtt", "paho"] = mqtt_backend
        self._next_drop_log = 0.0
        self._unlogged_drops = 0
        self._clock: Callable[[], float] = anyio.current_time
        """The event loop's clock, resolved by the feed (``on_message`` reads it per message)."""

    async def start(self, tg: anyio.abc.TaskGroup, get_job: GetJob) -> None:
        """Start the loops in ``tg``; returns once MQTT is subscribed (when it is enabled).

        ``get_job`` is ``GET /jobs/{id}``; a failure to connect the feed is raised here.
        """
        if self.settings.mqtt_enabled:
            await tg.start(self._run_feed)

        reconciler = Reconciler(
            self.schedule,
            self.hub,
            functools.partial(self._reconcile_get_job, get_job),
            timeout=self.settings.http_timeout,
        )
        tg.start_soon(reconciler.run)
        if self.settings.mqtt_enabled:
            tg.start_soon(self._age_workers_loop)

    # -- MQTT feed ---------------------------------------------------------------------------
    def _topics(self) -> list[str]:
        topics = [self.settings.job_events_topic, self.settings.worker_topic("+")]
        if self.settings.job_status_topic:
            topics.append(self.settings.job_status_topic.replace("{job_id}", "+"))
        return topics

    async def _run_feed(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        settings = self.settings
        backoff = Backoff(settings.reconnect_initial_delay, settings.reconnect_max_delay)
        started = False
        self._clock = loop_clock()
        client_prefix = f"cl-client-{uuid.uuid4().hex[:12]}"
        try:
            while True:
                try:
                    async with connect_mqtt(
                        settings.mqtt,
                        client_id=client_prefix,
                        keepalive=settings.mqtt_keepalive,
                        connect_timeout=settings.connect_timeout,
                        backend=self._mqtt_backend,
                    ) as conn:
                        await conn.subscribe(*self._topics(), qos=1)
                        self.mqtt_connected = True
                        self.schedule.feed_up(anyio.current_time(), reconnect=started)
                        if started:
                            logger.info(
                                "MQTT reconnected to %s; reconciling watched jobs",
                                settings.mqtt.url,
                            )
                        else:
                            started = True
                            task_status.started()
                        backoff.reset()
                        await conn.deliver(self.on_message)  # until it raises MqttError
                except MqttError as exc:
                    self.mqtt_connected = False
                    if not started:
                        raise
                    self.schedule.feed_down(anyio.current_time())
                    self.counters.reconnects += 1
                    delay = backoff.next_delay()
                    logger.warning("MQTT feed lost (%s); reconnecting in %.2f s", exc, delay)
                    await anyio.sleep(delay)
        finally:
            self.mqtt_connected = False  # cancelled with its connection

    def on_message(self, message: MqttMessage) -> None:
        """Decode one message and publish it to the hub or the worker registry."""
        self.counters.mqtt_messages += 1
        settings = self.settings
        topic = message.topic
        try:
            if topic == settings.job_events_topic:
                self.hub.publish(decode_job_event(message.payload), self._clock())
            elif (worker_id := topic_tail(topic, settings.worker_topic_prefix)) is not None:
                info = decode_worker(worker_id, message.payload)
                self.schedule.worker_update(
                    worker_id, info, retained=message.retain, now=self._clock()
                )
                self.registry.apply(worker_id, info, retained=message.retain, now_ms=now_ms())
            elif settings.job_status_topic and self._is_status_topic(topic):
                self.hub.publish(decode_job_status(message.payload), self._clock())
        except ProtocolError as exc:
            self._dropped_message(topic, message.payload, exc)
        except Exception:  # a bug, not bad input: the feed must go on for everyone else
            self.counters.malformed_messages += 1
            logger.exception(
                "error while handling a message on %r (payload %s)", topic, excerpt(message.payload)
            )

    def _dropped_message(self, topic: str, payload: bytes, exc: ProtocolError) -> None:
        """Count a malformed message; log it (at most one WARNING a second, the rest DEBUG)."""
        self.counters.malformed_messages += 1
        now = time.monotonic()
        if now < self._next_drop_log:
            self._unlogged_drops += 1
            logger.debug(
                "dropped a malformed message on %r: %s (payload %s)", topic, exc, excerpt(payload)
            )
            return
        more = self._unlogged_drops
        self._unlogged_drops = 0
        self._next_drop_log = now + 1.0
        logger.warning(
            "dropped a malformed message on %r: %s (payload %s)%s",
            topic,
            exc,
            excerpt(payload),
            f"; {more} more dropped in the last second" if more else "",
        )

    def _is_status_topic(self, topic: str) -> bool:
        pattern = self.settings.job_status_topic or ""
        head, _, tail = pattern.partition("{job_id}")
        return (
            topic.startswith(head) and topic.endswith(tail) and len(topic) > len(head) + len(tail)
        )

    # -- reconciliation (the schedule and its budget: _core/reconcile.py) ---------------------
    async def _reconcile_get_job(self, get_job: GetJob, job_id: str) -> JobResponse:
        """``GET /jobs/{id}`` for the reconciler, counting failures in the statistics.

        The Reconciler keeps a failure to its own job (checked again on its schedule).
        """
        self.counters.reconciled += 1
        try:
            return await get_job(job_id)
        except NotFoundError:
            raise
        except ClClientError as exc:
            self.counters.reconcile_errors += 1
            if isinstance(exc, ProtocolError):
                self.counters.malformed_responses += 1
                logger.warning("reconciling job %s: dropped a malformed answer: %s", job_id, exc)
            raise

    # -- workers -------------------------------------------------------------------------------
    async def _age_workers_loop(self) -> None:
        period = min(self.settings.worker_ttl / 3, 5.0)
        while True:
            await anyio.sleep(period)
            for worker_id in self.registry.prune(now_ms()):
                self.schedule.forget_worker(worker_id)
                logger.info(
                    "worker %s aged out (no capability message for %s s)",
                    worker_id,
                    self.settings.worker_ttl,
                )


class Reconciler:
    """Runs a :class:`ReconcileSchedule`: one dispatcher, one short task per request.

    A request that fails (a transport error, a bad answer, a timeout) concerns its job only: the
    job is checked again on its schedule. A 404 ends the job's watches with NotFoundError.
    """

    def __init__(
        self,
        schedule: ReconcileSchedule,
        hub: JobHub,
        get_job: Callable[[str], Awaitable[JobResponse]],
        *,
        timeout: float,
    ) -> None:
        self.schedule = schedule
        self._hub = hub
        self._get_job = get_job
        self._timeout = timeout
        self._wakeup = Wakeup()
        self._wake_at = -math.inf
        schedule.on_sooner = self._sooner

    def _sooner(self, when: float) -> None:
        if when < self._wake_at:
            self._wake_at = -math.inf
            self._wakeup.wake()

    async def run(self) -> None:
        """The dispatcher (runs until cancelled)."""
        schedule = self.schedule
        async with anyio.create_task_group() as tg:
            while True:
                now = anyio.current_time()
                wait = schedule.next_action(now)
                if wait <= 0:
                    tg.start_soon(self._check, schedule.pop(now))
                    continue
                self._wake_at = now + wait
                with anyio.move_on_after(wait):
                    await self._wakeup.wait()
                self._wake_at = -math.inf

    async def _check(self, interest: JobInterest) -> None:
        job_id = interest.job_id
        job: JobResponse | None = None
        try:
            with anyio.move_on_after(self._timeout) as scope:
                job = await self._get_job(job_id)
            if scope.cancelled_caught:
                logger.debug("reconciling job %s: no answer within %s s", job_id, self._timeout)
        except NotFoundError as exc:
            self._hub.fail(job_id, exc)
        except ClClientError as exc:
            logger.debug("reconciling job %s failed: %s", job_id, exc)
        except Exception:
            # One job's check never takes the client down; it is retried on its schedule.
            logger.exception("reconciling job %s failed unexpectedly", job_id)
        finally:
            now = anyio.current_time()
            if job is not None:
                self._hub.publish(JobUpdate.from_job(job), now)
            self.schedule.finished(interest, now, job)
