"""Sans-IO core: lifecycle rules, payload decoding, settings, errors, backoff, hub."""

from __future__ import annotations

import json
import random

import httpx
import pytest

from cl_client import (
    ApiError,
    AuthenticationError,
    BadRequestError,
    ClClientError,
    ClientSettings,
    JobFailedError,
    JobResponse,
    JobTimeoutError,
    JobUpdate,
    NotFoundError,
    ParameterError,
    PermissionDeniedError,
    ProtocolError,
    RequestValidationError,
    ServerError,
    ServerInfo,
    WorkerInfo,
    WorkerUnavailableError,
    parse_mqtt_url,
)
from cl_client._core import lifecycle
from cl_client._core.backoff import Backoff
from cl_client._core.errors import error_from_response
from cl_client._core.hub import JobHub
from cl_client._core.payloads import decode_job_event, decode_job_status, decode_worker, topic_tail
from cl_client._core.settings import SettingsModel
from cl_client.auth import SessionSettings


def upd(status: str, progress: int = 0, job_id: str = "j1") -> JobUpdate:
    return JobUpdate(job_id, status, progress)


# -- lifecycle -------------------------------------------------------------------------------
def test_rank_and_terminal_cover_old_and_unknown_names() -> None:
    assert [lifecycle.rank(s) for s in ("queued", "processing", "completed", "error")] == [
        0,
        1,
        2,
        2,
    ]
    assert lifecycle.canonical_status("IN_PROGRESS") == "processing"
    assert lifecycle.canonical_status("failed") == "error"
    assert lifecycle.is_terminal("failed") and lifecycle.is_failure("failed")
    assert not lifecycle.is_terminal("mystery") and lifecycle.rank("mystery") == 1
    assert not lifecycle.is_failure("completed")


@pytest.mark.parametrize(
    ("previous", "new", "accepted"),
    [
        (None, upd("processing"), True),
        (upd("queued"), upd("processing"), True),
        (upd("processing"), upd("queued"), False),  # out of order
        (upd("processing"), upd("processing"), False),  # QoS 1 duplicate
        (upd("processing", 10), upd("processing", 40), True),  # progress grows
        (upd("processing", 40), upd("processing", 10), False),
        (upd("completed", 100), upd("error"), False),  # terminal is final
        (upd("completed", 100), upd("completed", 100), False),
        (upd("processing"), upd("weird_state"), True),  # unknown in-flight status
        (upd("in_progress"), upd("processing"), False),  # same state, old name
        (upd("queued"), upd("failed"), True),
    ],
)
def test_accepts(previous: JobUpdate | None, new: JobUpdate, accepted: bool) -> None:
    assert lifecycle.accepts(previous, new) is accepted


# -- payloads --------------------------------------------------------------------------------
def test_decode_job_event_real_shape() -> None:
    payload = (
        b'{"job_id": "a", "event_type": "processing", "timestamp": 1795251260038, "progress": 0}'
    )
    update = decode_job_event(payload)
    assert (update.job_id, update.status, update.progress, update.source) == (
        "a",
        "processing",
        0,
        "mqtt",
    )
    assert update.timestamp == 1795251260038 and update.job is None


def test_decode_job_event_accepts_nested_progress_and_extra_fields() -> None:
    update = decode_job_event(
        b'{"job_id":"a","event_type":"completed","data":{"progress":100},"x":1}'
    )
    assert update.progress == 100 and update.is_terminal


@pytest.mark.parametrize(
    "payload",
    [b"", b"not json", b"[1, 2]", b'{"job_id": 5}', b'{"event_type": "queued"}', b"\xff\xfe"],
)
def test_decode_job_event_rejects_malformed(payload: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_job_event(payload)


def test_decode_job_status_full_response() -> None:
    job = {"job_id": "a", "task_type": "hash", "status": "failed", "error_message": "boom"}
    update = decode_job_status(json.dumps(job).encode())
    assert update.is_failed and update.job is not None and update.error_message == "boom"
    with pytest.raises(ProtocolError):
        decode_job_status(b'{"status": "queued"}')


def test_decode_worker_id_or_worker_id_and_empty() -> None:
    real = b'{"id": "w1", "capabilities": ["hash"], "idle_count": 1, "timestamp": 5}'
    assert decode_worker("w1", real) == WorkerInfo(
        worker_id="w1", capabilities=["hash"], idle_count=1, timestamp=5
    )
    newer = decode_worker("w2", b'{"worker_id": "w2", "capabilities": []}')
    assert newer is not None and newer.worker_id == "w2"
    implied = decode_worker("w3", b'{"capabilities": ["exif"]}')
    assert implied is not None and implied.worker_id == "w3"
    assert decode_worker("w1", b"") is None
    with pytest.raises(ProtocolError):
        decode_worker("w1", b'{"capabilities": "nope"}')


def test_topic_tail() -> None:
    assert topic_tail("inference/workers/w1", "inference/workers") == "w1"
    assert topic_tail("inference/workers/w1", "inference/workers/") == "w1"
    assert topic_tail("inference/workers/a/b", "inference/workers") is None
    assert topic_tail("inference/workers/", "inference/workers") is None
    assert topic_tail("other/w1", "inference/workers") is None


# -- models ----------------------------------------------------------------------------------
def test_server_info_auth_mode() -> None:
    assert ServerInfo.model_validate({"guestMode": "on"}).auth_required is False
    assert ServerInfo.model_validate({"guestMode": "off"}).auth_required is True
    assert ServerInfo.model_validate({"guestMode": "on", "auth_required": True}).auth_required
    assert ServerInfo.model_validate({}).auth_required is True


def test_job_response_tolerates_unknown_fields_and_reports_output_path() -> None:
    job = JobResponse.model_validate(
        {"job_id": "a", "status": "completed", "params": {"output_path": "output/x"}, "new": 1}
    )
    assert job.is_terminal and not job.is_failed and job.output_path == "output/x"
    assert JobResponse(job_id="a", status="queued").output_path is None
    update = JobUpdate.from_job(job)
    assert update.source == "http" and update.job is job and update.error_message is None


# -- settings --------------------------------------------------------------------------------
def test_settings_defaults_are_the_real_servers() -> None:
    s = ClientSettings()
    assert s.compute_url == "http://localhost:8002"
    assert s.job_events_topic == "inference/events"
    assert s.worker_topic() == "inference/workers/+"
    assert s.mqtt.url == "mqtt://localhost:1883"


def test_settings_from_env_and_overrides() -> None:
    env = {"COMPUTE_URL": "http://h:1/", "MQTT_URL": "mqtt://b:2", "MQTT_TOPIC": "t/e"}
    s = ClientSettings.from_env(env, reconcile_interval=2.0)
    assert (s.compute_url, s.mqtt_url, s.job_events_topic, s.reconcile_interval) == (
        "http://h:1",
        "mqtt://b:2",
        "t/e",
        2.0,
    )
    assert ClientSettings.from_env({}).compute_url == "http://localhost:8002"


@pytest.mark.parametrize(
    ("url", "host", "port", "tls"),
    [
        ("mqtt://h", "h", 1883, False),
        ("mqtts://h", "h", 8883, True),
        ("h:99", "h", 99, False),
        ("mqtt://u:p@[::1]:5", "::1", 5, False),
    ],
)
def test_parse_mqtt_url(url: str, host: str, port: int, tls: bool) -> None:
    ep = parse_mqtt_url(url)
    assert (ep.host, ep.port, ep.tls) == (host, port, tls)
    assert "p@" not in repr(ep)


@pytest.mark.parametrize("url", ["http://h:1", "mqtt://", "mqtt://h:notaport"])
def test_parse_mqtt_url_errors(url: str) -> None:
    with pytest.raises(ValueError, match=r"MQTT URL|scheme"):
        parse_mqtt_url(url)


def test_settings_reject_bad_urls() -> None:
    with pytest.raises(ValueError, match="compute_url"):
        ClientSettings(compute_url="localhost:8002")
    with pytest.raises(ValueError, match="scheme"):
        ClientSettings(mqtt_url="ws://x")


# -- errors ----------------------------------------------------------------------------------
def _response(status: int, body: bytes, content_type: str = "application/json") -> httpx.Response:
    request = httpx.Request("GET", "http://h/jobs/x?token=secret")
    return httpx.Response(
        status, content=body, headers={"content-type": content_type}, request=request
    )


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (405, ApiError),
        (500, ServerError),
    ],
)
def test_error_mapping_keeps_detail(status: int, cls: type[ApiError]) -> None:
    error = error_from_response(_response(status, b'{"detail": "Job x not found"}'))
    assert type(error) is cls and error.status_code == status
    assert error.detail == "Job x not found" and "Job x not found" in str(error)
    assert error.url == "http://h/jobs/x" and "secret" not in str(error)


def test_error_mapping_422_and_plain_text() -> None:
    body = {"detail": [{"type": "missing", "loc": ["body", "file"], "msg": "Field required"}]}
    error = error_from_response(_response(422, json.dumps(body).encode()))
    assert isinstance(error, RequestValidationError)
    assert "body.file: Field required" in str(error) and len(error.errors) == 1
    plain = error_from_response(_response(500, b"Internal Server Error", "text/plain"))
    assert isinstance(plain, ServerError) and plain.detail == "Internal Server Error"
    other = error_from_response(_response(418, b'["a", 1]'))
    assert other.detail == ["a", 1] and "418: a; 1" in str(other)
    assert RequestValidationError("x", detail="text").errors == []


def test_other_errors_say_what_happened() -> None:
    job = JobResponse(job_id="j", task_type="hash", status="error", error_message="bad input")
    assert "bad input" in str(JobFailedError(job)) and JobFailedError(job).job is job
    silent = JobResponse(job_id="j", status="error")
    assert "no error message" in str(JobFailedError(silent))
    timeout = JobTimeoutError("j", 2.5, "processing")
    assert isinstance(timeout, TimeoutError) and "2.5 s" in str(timeout)
    missing = WorkerUnavailableError(["hash", "exif"], ["clip_embedding"])
    assert "exif, hash" in str(missing) and "clip_embedding" in str(missing)
    assert "none" in str(WorkerUnavailableError(["hash"], []))
    assert issubclass(ApiError, ClClientError)


def test_backoff_grows_caps_and_resets() -> None:
    b = Backoff(1.0, 4.0, rng=random.Random(1))
    delays = [b.next_delay() for _ in range(5)]
    assert 0.5 <= delays[0] <= 1.0 and all(2.0 <= d <= 4.0 for d in delays[3:])
    b.reset()
    assert b.next_delay() <= 1.0


# -- hub -------------------------------------------------------------------------------------
class Recorder:
    def __init__(self) -> None:
        self.updates: list[JobUpdate] = []
        self.errors: list[ClClientError] = []

    def deliver(self, update: JobUpdate) -> None:
        self.updates.append(update)

    def fail(self, error: ClClientError) -> None:
        self.errors.append(error)


def test_hub_dispatches_in_lifecycle_order_and_primes_new_subscribers() -> None:
    hub = JobHub()
    early = Recorder()
    hub.add("j1", early, now=0)
    for u in [
        upd("queued"),
        upd("queued"),
        upd("processing"),
        upd("queued"),
        upd("completed", 100),
    ]:
        hub.publish(u, now=1)
    assert [u.status for u in early.updates] == ["queued", "processing", "completed"]
    assert hub.stats.dropped == 2 and hub.stats.accepted == 3
    late = Recorder()
    assert hub.add("j1", late, now=2) is not None
    assert [u.status for u in late.updates] == ["completed"]
    other = Recorder()
    hub.add("j2", other, now=0)
    assert other.updates == [] and hub.subscriber_count() == 3


def test_hub_keeps_richer_terminal_state() -> None:
    hub = JobHub()
    hub.publish(upd("completed", 100), now=0)
    job = JobResponse(job_id="j1", status="completed", progress=100, task_output={"a": 1})
    assert hub.publish(JobUpdate.from_job(job), now=1) is False
    latest = hub.latest("j1")
    assert latest is not None and latest.job is job


def test_hub_live_status_watched_and_remove() -> None:
    hub = JobHub()
    r = Recorder()
    hub.add("a", r, now=0)
    hub.add("b", Recorder(), now=0)
    hub.publish(upd("completed", job_id="b"), now=0)
    assert hub.watched() == ["a"]
    a, b = hub.interests()
    assert (hub.live_status(a), hub.live_status(b)) == ("", None)  # unknown, finished
    hub.publish(upd("queued", job_id="a"), now=3)
    assert hub.live_status(a) == "queued" and a.changed_at == 3
    hub.publish(upd("queued", job_id="a"), now=4)  # a duplicate does not restart the clock
    assert a.changed_at == 3 and "JobInterest a" in repr(a)
    hub.remove("a", r)
    assert hub.live_status(a) is None
    hub.remove("a", r)
    hub.remove("zzz", r)
    assert hub.subscriber_count("a") == 0


def test_hub_fail_ends_subscribers() -> None:
    hub = JobHub()
    r1, r2 = Recorder(), Recorder()
    hub.add("a", r1, now=0)
    hub.add("b", r2, now=0)
    hub.fail("a", NotFoundError("gone"))
    assert len(r1.errors) == 1 and r2.errors == []
    hub.fail_all(ClClientError("closed"))
    assert len(r2.errors) == 1 and hub.subscriber_count() == 0


def test_hub_cache_is_bounded_but_keeps_watched_jobs() -> None:
    hub = JobHub(cache_size=3)
    hub.add("w", Recorder(), now=0)
    hub.publish(upd("queued", job_id="w"), now=0)
    for i in range(10):
        hub.publish(upd("queued", job_id=f"j{i}"), now=0)
    assert hub.latest("w") is not None
    assert hub.latest("j0") is None and hub.latest("j9") is not None
    assert sum(hub.latest(f"j{i}") is not None for i in range(10)) == 2


def test_settings_repr_hides_mqtt_credentials() -> None:
    settings = ClientSettings(mqtt_url="mqtt://user:hunter2@broker:1883")
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings)
    assert "mqtt://***@broker:1883" in repr(settings)
    assert "mqtt://h:1" in repr(ClientSettings(mqtt_url="mqtt://h:1"))
    assert settings.mqtt.password == "hunter2"


def test_bad_mqtt_urls_never_echo_the_password() -> None:
    for url in ("mqtt://u:s3cret@host:99999", "ws://u:s3cret@host", "mqtt://u:s3cret@"):
        with pytest.raises(ValueError) as info:
            ClientSettings(mqtt_url=url)
        assert "s3cret" not in str(info.value)
        assert "***" in str(info.value)


@pytest.mark.parametrize(
    ("model", "field"),
    [
        (ClientSettings, "compute_url"),
        (ClientSettings, "mqtt_url"),
        (SessionSettings, "auth_url"),
        (SessionSettings, "compute_url"),
        (SessionSettings, "mqtt_url"),
    ],
)
def test_both_settings_classes_check_their_urls_the_same_way(
    model: type[SettingsModel], field: str
) -> None:
    with pytest.raises(ParameterError, match=rf"invalid {model.__name__}: {field}: "):
        _ = model.from_values({field: "ftp://" if field == "mqtt_url" else "nope"})
    good = "mqtt://u:secret@broker:1883" if field == "mqtt_url" else "http://u:secret@host:1/"
    settings = model.from_values({field: good})
    assert getattr(settings, field) == good.rstrip("/")  # http(s) URLs lose a trailing slash
    assert "secret" not in repr(settings)
