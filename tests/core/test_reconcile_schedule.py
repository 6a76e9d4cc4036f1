"""The reconcile schedule and its budget, sans IO: a real hub, a fake clock, no network."""

from __future__ import annotations

import math

import pytest

from cl_client import ClientSettings, JobResponse, JobUpdate, NotFoundError, WorkerInfo
from cl_client._core.hub import JobHub, JobInterest
from cl_client._core.reconcile import (
    HINT,
    NEW,
    PROCESSING,
    QUEUED,
    RECONNECT,
    RateBudget,
    ReconcileSchedule,
    SchedulePolicy,
)


class Sink:
    def deliver(self, update: JobUpdate) -> None:
        pass

    def fail(self, error: Exception) -> None:
        pass


def make(**settings: object) -> tuple[JobHub, ReconcileSchedule]:
    hub = JobHub()
    policy = SchedulePolicy.from_settings(ClientSettings.model_validate(settings))
    schedule = ReconcileSchedule(hub, policy, task_type_memory=3)
    schedule.feed_up(0.0, reconnect=False)
    return hub, schedule


def watch(hub: JobHub, job_id: str, status: str | None, now: float = 0.0) -> JobInterest:
    if status is not None:
        hub.publish(JobUpdate(job_id=job_id, status=status), now)
    hub.add(job_id, Sink(), now)
    return next(i for i in hub.interests() if i.job_id == job_id)


def drain(schedule: ReconcileSchedule, now: float) -> list[str]:
    """Every check that may start at ``now`` (each finishing at once with no news)."""
    taken: list[str] = []
    while schedule.next_action(now) == 0:
        interest = schedule.pop(now)
        taken.append(interest.job_id)
        schedule.finished(interest, now, None)
    return taken


def check_times(schedule: ReconcileSchedule, until: float, step: float = 0.5) -> list[float]:
    times: list[float] = []
    now = 0.0
    while now <= until:
        times += [now] * len(drain(schedule, now))
        now += step
    return times


def worker(idle: int, *caps: str) -> WorkerInfo:
    return WorkerInfo(worker_id="w", capabilities=list(caps), idle_count=idle)


def test_unknown_job_is_checked_at_once_then_on_the_processing_period() -> None:
    hub, schedule = make()
    watch(hub, "new", None, now=10)
    assert schedule.next_action(10) == 0 and schedule.ready_count == 1
    assert drain(schedule, 10) == ["new"]
    # Its check failed (still unknown): retried on the plain interval, first in line.
    assert schedule.next_action(10) == pytest.approx(5)
    assert drain(schedule, 15) == ["new"]


def test_queued_job_backs_off_by_age_to_the_cap_while_the_feed_is_up() -> None:
    hub, schedule = make(reconcile_interval=5, reconcile_max_interval=60)
    watch(hub, "q", "queued")
    assert check_times(schedule, 300, step=1) == [5, 10, 20, 40, 80, 140, 200, 260]


def test_processing_job_is_checked_every_interval_from_its_last_change() -> None:
    hub, schedule = make(reconcile_interval=5)
    watch(hub, "p", "queued")
    hub.publish(JobUpdate(job_id="p", status="processing"), 3)
    hub.publish(JobUpdate(job_id="p", status="processing"), 4.5)  # a duplicate: no new clock
    assert check_times(schedule, 20) == [8, 13, 18]


def test_accepted_changes_restart_the_clock_and_terminal_ones_end_the_checks() -> None:
    hub, schedule = make(reconcile_interval=5)
    watch(hub, "j", "queued")
    assert drain(schedule, 5) == ["j"]  # next at age 10
    hub.publish(JobUpdate(job_id="j", status="processing", progress=0), 7)
    assert drain(schedule, 10) == []  # the old deadline popped and moved to 7 + 5
    assert drain(schedule, 12) == ["j"]
    hub.publish(JobUpdate(job_id="j", status="completed", progress=100), 13)
    assert check_times(schedule, 60) == [] and schedule.timer_count == 0


def test_idle_announcement_checks_the_processing_jobs_that_worker_may_have_run() -> None:
    hub, schedule = make(reconcile_interval=60)
    schedule.remember_task_type("mine", "hash")
    schedule.remember_task_type("other-type", "clip")
    for job_id in ("older", "mine", "other-type", "untyped", "still-queued"):
        watch(hub, job_id, "queued")
    hub.publish(JobUpdate(job_id="older", status="processing"), 1)  # before the worker went busy
    schedule.worker_update("w", worker(1, "hash"), retained=True, now=1.5)  # first: no hint
    schedule.worker_update("w", worker(0, "hash"), retained=False, now=2)
    schedule.worker_update("w", worker(0, "hash"), retained=False, now=2.2)  # still busy
    for job_id in ("mine", "other-type", "untyped"):
        hub.publish(JobUpdate(job_id=job_id, status="processing"), 3)
    assert drain(schedule, 4) == []
    schedule.worker_update("w", worker(1, "hash"), retained=False, now=4)
    assert schedule.next_action(4) == 0
    assert sorted(drain(schedule, 4)) == ["mine", "untyped"]
    schedule.worker_update("w", worker(1, "hash"), retained=False, now=5)  # a heartbeat
    assert drain(schedule, 5) == []


def test_a_retained_busy_worker_may_have_run_any_job_and_leaving_counts_as_idle() -> None:
    hub, schedule = make(reconcile_interval=60)
    hub.publish(JobUpdate(job_id="p", status="processing"), 0)
    watch(hub, "p", None, now=0)  # known: processing
    schedule.worker_update("w", worker(0, "x"), retained=True, now=1)  # busy since who knows
    schedule.worker_update("w", None, retained=False, now=2)  # gone: its job ended somehow
    assert drain(schedule, 2) == ["p"]
    schedule.worker_update("w", None, retained=False, now=3)  # unknown worker: nothing
    schedule.worker_update("v", worker(0, "x"), retained=False, now=4)
    schedule.forget_worker("v")  # aged out: forgotten, no hint
    schedule.worker_update("v", worker(1, "x"), retained=False, now=5)
    assert drain(schedule, 5) == []


def test_a_processing_job_watched_while_a_capable_worker_is_idle_is_checked_at_once() -> None:
    hub, schedule = make(reconcile_interval=60)
    schedule.remember_task_type("a", "hash")
    schedule.remember_task_type("b", "clip")
    schedule.worker_update("w", worker(1, "hash"), retained=False, now=0)
    for job_id in ("a", "b"):  # both went processing before anyone watched them
        hub.publish(JobUpdate(job_id=job_id, status="processing"), 0)
        watch(hub, job_id, None, now=1)
    assert drain(schedule, 1) == ["a"]  # nobody idle can run "clip": b's worker is busy


def test_multi_slot_worker_freeing_a_slot_hints_its_jobs() -> None:
    hub, schedule = make(reconcile_interval=60)
    watch(hub, "p", "processing")
    schedule.worker_update("w", worker(1, "x"), retained=False, now=1)
    schedule.worker_update("w", worker(2, "x"), retained=False, now=2)
    assert drain(schedule, 2) == ["p"]


def test_news_during_a_check_triggers_one_more_check() -> None:
    hub, schedule = make(reconcile_interval=60)
    watch(hub, "p", "processing")
    schedule.worker_update("w", worker(0), retained=True, now=0)
    schedule.worker_update("w", worker(1), retained=False, now=1)
    assert schedule.next_action(1) == 0
    interest = schedule.pop(1)  # in flight
    schedule.feed_up(1.2, reconnect=True)  # news while in flight
    assert interest.again and drain(schedule, 1.2) == []
    schedule.finished(interest, 1.3, None)
    assert drain(schedule, 1.3) == ["p"]
    assert drain(schedule, 61) == [] and drain(schedule, 61.3) == ["p"]


@pytest.mark.slow
def test_budget_spaces_checks_and_limits_those_in_flight() -> None:
    hub, schedule = make(reconcile_rate=20, reconcile_concurrency=3)
    for i in range(5000):
        watch(hub, f"q{i}", "queued")
    started: list[JobInterest] = []
    while schedule.next_action(5) == 0:
        started.append(schedule.pop(5))
    assert len(started) == 3  # at most 3 in flight: wait for one to finish
    assert schedule.next_action(5) == math.inf
    for interest in started:
        schedule.finished(interest, 5, None)
    times = check_times_from(schedule, 5, 15, step=0.01)
    per_second = [sum(1 for t in times if s <= t < s + 1) for s in range(6, 15)]
    assert max(per_second) <= 21 and min(per_second) >= 19
    assert len(times) <= 2 + 20 * 10 + 1


def check_times_from(
    schedule: ReconcileSchedule, start: float, until: float, step: float
) -> list[float]:
    times: list[float] = []
    now = start
    while now <= until:
        times += [now] * len(drain(schedule, now))
        now += step
    return times


def test_when_the_budget_is_short_the_likeliest_changes_go_first() -> None:
    hub, schedule = make(reconcile_rate=1, reconcile_interval=10)
    schedule.remember_task_type("p", "y")
    schedule.remember_task_type("hinted", "x")
    for i in range(3):
        watch(hub, f"q{i}", "queued")
    watch(hub, "p", "processing")
    watch(hub, "hinted", "processing")
    schedule.worker_update("w", worker(0, "x"), retained=True, now=0)
    assert drain(schedule, 0) == []
    # At 11 s everything is due, a new watch comes, and a worker offering "x" goes idle.
    watch(hub, "new", None, now=11)
    schedule.worker_update("w", worker(1, "x"), retained=False, now=11)
    order: list[str] = []
    now = 11.0
    while now < 17:
        order += drain(schedule, now)  # one token per second
        now += 0.5
    assert order == ["new", "hinted", "p", "q0", "q1", "q2"]


def test_news_takes_a_job_out_of_the_line_onto_its_new_schedule() -> None:
    hub, schedule = make(reconcile_rate=1, reconcile_interval=5)
    for i in range(20):
        watch(hub, f"q{i}", "queued")
    assert drain(schedule, 5) == ["q0"]  # the other 19 wait for the budget
    hub.publish(JobUpdate(job_id="q10", status="processing"), 6)
    order: list[str] = []
    now = 6.0
    while now < 13:
        order += drain(schedule, now)
        now += 0.5
    assert order == ["q1", "q2", "q3", "q4", "q5", "q10", "q6"]  # q10 at 6 + 5 s, first


def test_reconnect_checks_every_watched_job_once_processing_first() -> None:
    hub, schedule = make(reconcile_interval=60)
    for job_id, status in (("q1", "queued"), ("p1", "processing"), ("q2", "queued")):
        watch(hub, job_id, status)
    watch(hub, "done", "completed")
    watch(hub, "unknown", None)
    assert drain(schedule, 0) == ["unknown"]
    schedule.feed_down(1)
    schedule.feed_up(2, reconnect=True)
    assert drain(schedule, 2) == ["unknown", "p1", "q1", "q2"]
    assert drain(schedule, 30) == []


def test_queued_jobs_stop_backing_off_while_the_feed_is_down() -> None:
    hub, schedule = make(reconcile_interval=5, reconcile_max_interval=60)
    watch(hub, "q", "queued")
    assert check_times(schedule, 45, step=1) == [5, 10, 20, 40]  # next at 80
    schedule.feed_down(45)
    assert check_times_from(schedule, 45, 56, step=1) == [45, 50, 55]
    schedule.feed_up(56, reconnect=False)
    assert check_times_from(schedule, 56, 70, step=1) == []


def test_http_only_polling_uses_the_poll_settings_under_the_same_budget() -> None:
    hub = JobHub()
    settings = ClientSettings(
        mqtt_enabled=False, poll_interval=1, poll_backoff=1.5, poll_max_interval=3
    )
    schedule = ReconcileSchedule(hub, SchedulePolicy.from_settings(settings))
    assert schedule.policy.rate == settings.reconcile_rate
    watch(hub, "q", "queued")
    watch(hub, "p", "processing")
    times: dict[str, list[float]] = {"q": [], "p": []}
    now = 0.0
    while now <= 10:
        while schedule.next_action(now) == 0:
            interest = schedule.pop(now)
            times[interest.job_id].append(now)
            schedule.finished(interest, now, None)
        now += 0.25
    assert times["p"] == [float(t) for t in range(1, 11)]
    assert times["q"] == [1, 2, 3, 4.5, 6.75, 9.75]  # at 1.5 x its age, 1 to 3 s apart


def test_unwatched_and_finished_jobs_leave_the_queues() -> None:
    hub, schedule = make(reconcile_interval=5)
    sink = Sink()
    hub.publish(JobUpdate(job_id="a", status="queued"), 0)
    hub.add("a", sink, 0)
    watch(hub, "b", None)
    hub.remove("a", sink)
    hub.fail("b", NotFoundError("gone"))
    assert drain(schedule, 0) == [] and check_times(schedule, 30) == []
    # A check whose job finished meanwhile is not rescheduled; the task type comes from HTTP.
    interest = watch(hub, "c", None)
    taken = schedule.pop(0)
    job = JobResponse(job_id="c", status="completed", task_type="hash")
    hub.publish(JobUpdate.from_job(job), 0.5)
    schedule.finished(taken, 0.5, job)
    assert taken is interest and interest.task_type == "hash" and check_times(schedule, 30) == []


def test_task_types_are_remembered_for_a_bounded_number_of_jobs() -> None:
    hub, schedule = make()
    for i in range(5):
        schedule.remember_task_type(f"j{i}", "hash")
    assert watch(hub, "j0", "queued").task_type is None  # forgotten (memory of 3)
    assert watch(hub, "j4", "queued").task_type == "hash"
    interest = watch(hub, "j9", "queued")
    job = JobResponse(job_id="j9", status="processing", task_type="clip")
    hub.publish(JobUpdate.from_job(job), 1)
    assert interest.task_type == "clip"


def test_rate_budget_refills_up_to_its_burst() -> None:
    budget = RateBudget(rate=10, burst=2)
    assert budget.wait_time(100) == 0
    budget.take(100)
    budget.take(100)
    assert budget.wait_time(100) == pytest.approx(0.1)
    assert budget.wait_time(99) == pytest.approx(0.1)  # a clock going back changes nothing
    assert budget.wait_time(105) == 0
    budget.take(105)
    budget.take(105)
    budget.take(105)
    assert budget.wait_time(105) == pytest.approx(0.2)


def test_classes_are_ordered_by_likelihood_of_change() -> None:
    assert NEW < HINT < PROCESSING < RECONNECT < QUEUED
    assert SchedulePolicy.from_settings(ClientSettings(reconcile_rate=2)).burst == 1


def test_edges_of_the_queues() -> None:
    hub, schedule = make(reconcile_interval=5)
    # A job that finishes while waiting in line leaves it without a check.
    watch(hub, "gone", None)
    hub.publish(JobUpdate(job_id="gone", status="completed", progress=100), 0)
    # A job already in line keeps its better class; a queued job in flight during a reconnect
    # is not checked twice.
    watch(hub, "new", None)
    watch(hub, "busy", "queued")
    schedule.feed_up(0, reconnect=True)  # "new" stays NEW, "busy" is in line as RECONNECT
    assert schedule.next_action(0) == 0
    assert schedule.pop(0).job_id == "new"
    taken = schedule.pop(0)
    assert taken.job_id == "busy"
    schedule.feed_up(0.1, reconnect=True)
    schedule.feed_down(0.2)  # skips the one in flight
    assert not taken.again
    schedule.finished(taken, 0.3, None)
    assert drain(schedule, 0.3) == []
    # A worker that leaves while idle hints nothing.
    schedule.worker_update("w", worker(1), retained=False, now=1)
    schedule.worker_update("w", None, retained=False, now=2)
    assert drain(schedule, 2) == []


def test_polling_does_not_depend_on_the_feed() -> None:
    hub = JobHub()
    settings = ClientSettings(mqtt_enabled=False, poll_interval=1, poll_max_interval=8)
    schedule = ReconcileSchedule(hub, SchedulePolicy.from_settings(settings))
    watch(hub, "q", "queued")
    schedule.feed_down(0)
    assert check_times(schedule, 10, step=0.25) == [1, 2, 3, 4.5, 6.75]  # then 10.125
