"""Watch mailboxes, callback subscriptions and the worker registry, without the network."""

from __future__ import annotations

import gc
import logging

import anyio
import anyio.abc
import anyio.lowlevel
import pytest
from anyio.abc import ObjectReceiveStream
from anyio.streams.stapled import StapledObjectStream

from cl_client import (
    ClClientError,
    JobResponse,
    JobUpdate,
    JobWatch,
    NotFoundError,
    WorkerEvent,
    WorkerInfo,
    WorkerWatch,
)
from cl_client._callbacks import CallbackRunner, CallbackSubscription
from cl_client._core.hub import JobHub
from cl_client._core.mailbox import Mailbox, MailboxSink
from cl_client._core.workers import WorkerRegistry
from tests.util import wait_until


def upd(status: str, progress: int = 0, job_id: str = "j") -> JobUpdate:
    return JobUpdate(job_id=job_id, status=status, progress=progress)


async def test_watch_coalesces_but_keeps_terminal_and_unregisters() -> None:
    hub = JobHub()
    watch = JobWatch(hub, "j", now=0)
    for u in (upd("queued"), upd("processing"), upd("processing", 50), upd("completed", 100)):
        hub.publish(u, now=0)
    seen = [(u.status, u.progress) async for u in watch]
    assert seen == [("processing", 50), ("completed", 100)]
    assert watch.closed and hub.subscriber_count("j") == 0
    assert watch.latest is not None and watch.latest.is_terminal
    assert "closed" in repr(watch)


async def test_watch_waits_for_updates_and_is_primed() -> None:
    hub = JobHub()
    hub.publish(upd("processing"), now=0)
    async with JobWatch(hub, "j", now=0) as watch:
        first = await watch.__anext__()
        assert first.status == "processing"

        async def later() -> None:
            await anyio.sleep(0.01)
            hub.publish(upd("error"), now=1)

        finals: list[JobUpdate] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(later)
            finals.append(await watch.__anext__())
        assert finals[0].is_failed
        with pytest.raises(StopAsyncIteration):
            await watch.__anext__()


async def test_watch_raises_failure_and_ends_on_aclose() -> None:
    hub = JobHub()
    watch = JobWatch(hub, "j", now=0)
    hub.fail("j", NotFoundError("Job j not found"))
    with pytest.raises(NotFoundError):
        await watch.__anext__()
    other = JobWatch(hub, "k", now=0)

    async def close_soon() -> None:
        await anyio.sleep(0.01)
        await other.aclose()

    async with anyio.create_task_group() as tg:
        tg.start_soon(close_soon)
        with pytest.raises(StopAsyncIteration):
            await other.__anext__()
    assert hub.subscriber_count() == 0
    hub.publish(upd("queued", job_id="k"), now=0)  # nothing to deliver to


async def test_watch_unregisters_when_garbage_collected() -> None:
    hub = JobHub()
    JobWatch(hub, "j", now=0)
    gc.collect()
    assert hub.subscriber_count() == 0


async def test_watch_cancelled_while_waiting_loses_nothing() -> None:
    hub = JobHub()
    watch = JobWatch(hub, "j", now=0)
    with anyio.move_on_after(0.01):
        await watch.__anext__()
    hub.publish(upd("completed"), now=0)
    assert (await watch.__anext__()).status == "completed"


class Spawner:
    def __init__(self, tg: anyio.abc.TaskGroup) -> None:
        self.tg = tg
        self.spawned = 0

    def __call__(self, fn: object) -> None:
        from collections.abc import Callable, Coroutine
        from typing import cast

        self.spawned += 1
        self.tg.start_soon(cast(Callable[[], Coroutine[object, object, None]], fn))


async def resolve(update: JobUpdate) -> JobResponse:
    return JobResponse(job_id=update.job_id, status=update.status, task_output={"ok": True})


async def test_callbacks_sync_and_async_with_final_job() -> None:
    hub = JobHub()
    progress: list[str] = []
    completed: list[JobResponse] = []
    finished: list[str] = []

    def on_finished(s: CallbackSubscription) -> None:
        finished.append(s.subscription_id)
        hub.remove(s.job_id, s)

    async def on_complete(job: JobResponse) -> None:
        await anyio.lowlevel.checkpoint()
        completed.append(job)

    subs: list[CallbackSubscription] = []
    async with anyio.create_task_group() as tg:
        spawn = Spawner(tg)
        sub = CallbackSubscription(
            "s1",
            "j",
            on_progress=lambda u: progress.append(u.status),
            on_complete=on_complete,
            spawn=spawn,
            resolve=resolve,
            finished=on_finished,
        )
        subs.append(sub)
        hub.add("j", sub, now=0)
        hub.publish(upd("queued"), now=0)
        hub.publish(upd("processing"), now=0)
        hub.publish(upd("completed"), now=0)
        hub.publish(upd("error"), now=0)
    assert progress == ["queued", "processing", "completed"]
    assert [j.task_output for j in completed] == [{"ok": True}]
    assert finished == ["s1"] and hub.subscriber_count() == 0
    assert not subs[0].active and "s1" in repr(subs[0])


async def test_callback_errors_are_logged_and_harm_nobody(caplog: pytest.LogCaptureFixture) -> None:
    hub = JobHub()
    good: list[str] = []

    def bad(update: JobUpdate) -> None:
        raise RuntimeError("callback bug")

    def record(update: JobUpdate) -> None:
        good.append(update.status)

    def bad_complete(job: JobResponse) -> None:
        raise RuntimeError("complete bug")

    async with anyio.create_task_group() as tg:
        for sid, cb in (("bad", bad), ("good", record)):
            hub.add(
                "j",
                CallbackSubscription(
                    sid,
                    "j",
                    on_progress=cb,
                    on_complete=bad_complete,
                    spawn=Spawner(tg),
                    resolve=resolve,
                    finished=lambda s: None,
                ),
                now=0,
            )
        with caplog.at_level(logging.ERROR, logger="cl_client"):
            hub.publish(upd("processing"), now=0)
            hub.publish(upd("completed"), now=0)
            await anyio.sleep(0.05)
    assert good == ["processing", "completed"]
    assert "callback bug" in caplog.text and "complete bug" in caplog.text


async def test_slow_callback_drops_oldest_and_counts() -> None:
    hub = JobHub()
    seen: list[int] = []
    gate = anyio.Event()

    async def slow(update: JobUpdate) -> None:
        await gate.wait()
        seen.append(update.progress)

    subs: list[CallbackSubscription] = []
    async with anyio.create_task_group() as tg:
        sub = CallbackSubscription(
            "s",
            "j",
            on_progress=slow,
            on_complete=None,
            spawn=Spawner(tg),
            resolve=resolve,
            finished=lambda s: None,
            max_pending=3,
        )
        subs.append(sub)
        hub.add("j", sub, now=0)
        for p in range(1, 11):
            hub.publish(upd("processing", p), now=0)
        hub.publish(upd("completed", 100), now=0)
        await anyio.sleep(0.01)
        gate.set()
    # The oldest in-flight updates went; the terminal one never does.
    assert seen == [8, 9, 10, 100] and subs[0].dropped == 7


async def test_cancelled_or_failed_subscription_stops() -> None:
    hub = JobHub()
    seen: list[str] = []
    async with anyio.create_task_group() as tg:
        sub = CallbackSubscription(
            "s",
            "j",
            on_progress=lambda u: seen.append(u.status),
            on_complete=None,
            spawn=Spawner(tg),
            resolve=resolve,
            finished=lambda s: None,
        )
        hub.add("j", sub, now=0)
        sub.cancel()
        hub.publish(upd("processing"), now=0)
        sub2 = CallbackSubscription(
            "s2",
            "k",
            on_progress=lambda u: seen.append(u.status),
            on_complete=None,
            spawn=Spawner(tg),
            resolve=resolve,
            finished=lambda s: seen.append("finished"),
        )
        sub2.fail(ClClientError("gone"))
        sub2.deliver(upd("queued", job_id="k"))
    assert seen == ["finished"]


async def test_worker_registry_retained_live_stale_and_prune() -> None:
    reg = WorkerRegistry(ttl=10)
    now = 1_000_000
    reg.apply(
        "w1",
        WorkerInfo(worker_id="w1", capabilities=["hash"], timestamp=now - 1000),
        retained=True,
        now_ms=now,
    )
    reg.apply(
        "dead",
        WorkerInfo(worker_id="dead", capabilities=["exif"], timestamp=now - 60_000),
        retained=True,
        now_ms=now,
    )
    reg.apply(
        "w2",
        WorkerInfo(worker_id="w2", capabilities=["exif"], idle_count=0, timestamp=1),
        retained=False,
        now_ms=now,
    )
    assert set(reg.workers) == {"w1", "w2"}  # the busy w2 counts, the stale one does not
    assert reg.missing(["hash", "exif", "clip_embedding"]) == ["clip_embedding"]
    assert reg.prune(now + 9_500) == ["w1"]
    reg.apply("w2", None, retained=False, now_ms=now)
    assert reg.workers == {} and reg.capabilities() == set()


async def test_worker_watch_snapshot_then_changes() -> None:
    reg = WorkerRegistry(ttl=10)
    reg.apply("w1", WorkerInfo(worker_id="w1", capabilities=["hash"]), retained=False, now_ms=0)
    async with WorkerWatch(reg, max_pending=2) as watch:
        first = await watch.__anext__()
        assert first.worker_id == "w1" and first.info is not None

        async def change() -> None:
            await anyio.sleep(0.01)
            reg.clear()

        gone: list[WorkerEvent] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(change)
            gone.append(await watch.__anext__())
        assert gone[0].info is None
        for i in range(5):
            reg.apply(f"x{i}", WorkerInfo(worker_id=f"x{i}"), retained=False, now_ms=0)
        assert watch.dropped == 3
        assert [(await watch.__anext__()).worker_id for _ in range(2)] == ["x3", "x4"]
    with pytest.raises(StopAsyncIteration):
        await watch.__anext__()
    await watch.aclose()


async def test_worker_registry_wait_changed() -> None:
    reg = WorkerRegistry(ttl=10)

    async def add() -> None:
        await anyio.sleep(0.01)
        reg.apply("w", WorkerInfo(worker_id="w"), retained=False, now_ms=0)

    async with anyio.create_task_group() as tg:
        tg.start_soon(add)
        with anyio.fail_after(2):
            await reg.wait_changed()
    assert "w" in reg.workers


# ---------------------------------------------------------------------- the one mailbox


async def test_receive_is_always_a_checkpoint_and_loses_nothing() -> None:
    hub = JobHub()
    hub.publish(upd("processing"), now=0)
    watch = JobWatch(hub, "j", now=0)
    with anyio.CancelScope() as scope:
        scope.cancel()
        await watch.receive()  # an item is ready, and still the cancellation is seen
        pytest.fail("receive() did not checkpoint")  # pragma: no cover
    assert watch.statistics().pending == 1
    assert (await watch.receive()).status == "processing"
    with pytest.raises(anyio.WouldBlock):
        watch.receive_nowait()


async def test_coalescing_mailbox_statistics_error_and_close() -> None:
    hub = JobHub()
    watch = JobWatch(hub, "j", now=0)
    for progress in (10, 20, 30):
        hub.publish(upd("processing", progress), now=0)
    stats = watch.statistics()
    assert (stats.pending, stats.delivered, stats.coalesced, stats.dropped) == (1, 3, 2, 0)
    assert not stats.ended and not stats.closed and stats.tasks_waiting == 0
    hub.fail("j", NotFoundError("Job j not found"))
    assert watch.statistics().ended and hub.subscriber_count() == 0
    assert (await watch.receive()).progress == 30  # what was pending comes first
    with pytest.raises(NotFoundError):
        await watch.receive()  # then the error, once
    with pytest.raises(anyio.EndOfStream):
        await watch.receive()
    assert watch.closed
    await watch.aclose()
    with pytest.raises(anyio.ClosedResourceError):
        await watch.receive()
    assert [u async for u in watch] == []


async def test_closing_wakes_a_waiting_receive_and_counts_it() -> None:
    hub = JobHub()
    watch = JobWatch(hub, "j", now=0)
    waiting: list[int] = []

    async def close_soon() -> None:
        await anyio.sleep(0.01)
        waiting.append(watch.statistics().tasks_waiting)
        await watch.aclose()

    async with anyio.create_task_group() as tg:
        tg.start_soon(close_soon)
        with pytest.raises(anyio.EndOfStream):
            await watch.receive()
    assert waiting == [1] and watch.statistics().tasks_waiting == 0


async def test_a_watch_is_an_anyio_object_receive_stream() -> None:
    async def statuses(stream: ObjectReceiveStream[JobUpdate]) -> list[str]:
        return [update.status async for update in stream]

    # code written against the anyio interface takes a watch or a memory stream double
    send, receive = anyio.create_memory_object_stream[JobUpdate](10)
    async with send, receive:
        for status in ("queued", "completed"):
            await send.send(upd(status))
        await send.aclose()
        assert await statuses(receive) == ["queued", "completed"]

    hub = JobHub()
    watch = JobWatch(hub, "j", now=0)
    hub.publish(upd("queued"), now=0)
    hub.publish(upd("completed"), now=0)
    assert await statuses(watch) == ["queued", "completed"]

    # and composes with anyio's stream utilities
    other = JobWatch(hub, "k", now=0)
    hub.publish(upd("processing", job_id="k"), now=0)
    sink, ignored = anyio.create_memory_object_stream[JobUpdate](1)
    async with StapledObjectStream(sink, other) as both:
        assert (await both.receive()).job_id == "k"
    assert other.closed and hub.subscriber_count() == 0
    ignored.close()


async def test_drop_oldest_mailbox_with_limit_one_and_final_items() -> None:
    sink = MailboxSink[int](limit=1, final=lambda item: item < 0)
    mailbox = Mailbox(sink)
    for item in (1, 2, 3):
        sink.deliver(item)
    sink.deliver(-1)  # final: never dropped, and nothing after it
    sink.deliver(4)
    assert mailbox.statistics().dropped == 2
    assert [item async for item in mailbox] == [3, -1]
    assert mailbox.closed


async def test_worker_watch_ends_with_an_error_and_unregisters_when_dropped() -> None:
    reg = WorkerRegistry(ttl=10)
    reg.apply("w1", WorkerInfo(worker_id="w1"), retained=False, now_ms=0)
    watch = WorkerWatch(reg, max_pending=10)
    assert (await watch.receive()).worker_id == "w1"
    reg.end_watches()  # the client is closing
    with pytest.raises(anyio.EndOfStream):
        await watch.receive()
    failing = WorkerWatch(reg)
    assert failing._sink in reg._watches
    failing._sink.fail(ClClientError("broken"))
    assert failing._sink not in reg._watches
    assert (await failing.receive()).worker_id == "w1"
    with pytest.raises(ClClientError, match="broken"):
        await failing.receive()
    WorkerWatch(reg)  # dropped at once
    gc.collect()
    assert reg._watches == []


async def test_a_cancelled_wait_for_a_change_leaves_nothing_behind() -> None:
    reg = WorkerRegistry(ttl=10)
    for _ in range(3):
        with anyio.move_on_after(0.001):
            await reg.wait_changed()
    reg.apply("w", WorkerInfo(worker_id="w"), retained=False, now_ms=0)
    assert reg._changed._event is None


async def test_subscription_statistics() -> None:
    hub = JobHub()
    subs: list[CallbackSubscription] = []
    async with anyio.create_task_group() as tg:
        sub = CallbackSubscription(
            "s",
            "j",
            on_progress=None,
            on_complete=None,
            spawn=Spawner(tg),
            resolve=resolve,
            finished=lambda s: hub.remove(s.job_id, s),
            max_pending=2,
        )
        subs.append(sub)
        hub.add("j", sub, now=0)
        for progress in range(1, 5):
            hub.publish(upd("processing", progress), now=0)
        stats = sub.statistics()
        assert (stats.pending, stats.delivered, stats.dropped) == (2, 4, 2)
    assert subs[0].active and subs[0].statistics().pending == 0  # drained, still subscribed
    subs[0].cancel()
    assert not subs[0].active and hub.subscriber_count() == 0


async def test_the_runner_calls_sync_callbacks_inline_and_hands_async_ones_to_a_task(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub = JobHub()
    runner = CallbackRunner()
    calls: list[str] = []
    completed: list[JobResponse] = []

    def sync_progress(update: JobUpdate) -> None:
        calls.append(f"sync {update.status}")
        if update.progress == 13:
            raise RuntimeError("sync bug")

    async def async_progress(update: JobUpdate) -> None:
        await anyio.lowlevel.checkpoint()
        calls.append(f"async {update.status}")
        if update.progress == 13:
            raise RuntimeError("async bug")

    async with anyio.create_task_group() as tg:
        tg.start_soon(runner.run)
        spawner = Spawner(tg)
        for job_id, callback in (("a", sync_progress), ("b", async_progress)):
            hub.add(
                job_id,
                CallbackSubscription(
                    job_id,
                    job_id,
                    on_progress=callback,
                    on_complete=completed.append,
                    spawn=spawner,
                    resolve=resolve,
                    finished=lambda s: hub.remove(s.job_id, s),
                    schedule=runner.schedule,
                ),
                now=0,
            )
        with caplog.at_level(logging.ERROR, logger="cl_client"):
            for job_id in ("a", "b"):
                hub.publish(upd("processing", 13, job_id), now=0)
            await anyio.sleep(0.05)
            assert spawner.spawned == 1  # only the async callback needed a task
            for job_id in ("a", "b"):
                hub.publish(upd("completed", 100, job_id), now=0)
            await wait_until(lambda: len(completed) == 2)
        tg.cancel_scope.cancel()
    assert sorted(calls) == [
        "async completed",
        "async processing",
        "sync completed",
        "sync processing",
    ]
    assert "sync bug" in caplog.text and "async bug" in caplog.text
    assert sorted(job.job_id for job in completed) == ["a", "b"]
    assert hub.subscriber_count() == 0
