"""ComputeClient: admin calls, configuration forms and edge paths, against the local service."""

from __future__ import annotations

import dataclasses
import inspect
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Literal, cast

import anyio
import anyio.lowlevel
import httpx
import pytest

from cl_client import (
    ClientClosedError,
    ClientSettings,
    ComputeClient,
    DownloadError,
    JobResponse,
    NotFoundError,
    ParameterError,
    SettingsOverrides,
    TransportError,
)
from cl_client._core.groups import unwrap_group
from cl_client.testing import LocalComputeService, generic_task
from tests.util import wait_until

Factory = Callable[..., LocalComputeService]


@pytest.fixture
def upload(tmp_path: Path) -> Path:
    path = tmp_path / "data.bin"
    path.write_bytes(b"\x00\x01payload")
    return path


@pytest.mark.slow
async def test_admin_calls_and_config_fallback(svc: LocalComputeService, upload: Path) -> None:
    async with ComputeClient(svc.settings()) as client:
        await client.wait((await client.submit("generic", upload)).job_id)
        storage = await client.storage_info()
        assert storage.job_count == 1 and storage.total_size > 0
        config = await client.get_config()
        assert config.guest_mode is True
        assert (await client.cleanup(days=1)).deleted_count == 0
        assert (await client.cleanup(days=0)).deleted_count >= 0
        with pytest.raises(ParameterError, match="days"):
            await client.cleanup(days=-1)
    # The real server has no /admin/pref: the client's fallback path ends in a 404 there.
    pref_only = svc.settings(admin_config_paths=("/admin/pref",))
    async with ComputeClient(pref_only) as client:
        with pytest.raises(NotFoundError):
            await client.get_config()
    nowhere = svc.settings(admin_config_paths=("/admin/missing",))
    async with ComputeClient(nowhere) as client:
        with pytest.raises(NotFoundError):
            await client.get_config()
        with pytest.raises(NotFoundError):
            await client.set_guest_mode(False)


async def test_admin_config_falls_back_to_a_newer_servers_pref_routes(
    local_compute_factory: Factory,
) -> None:
    async with local_compute_factory(admin_pref=True) as newer_server:
        newer = newer_server.settings(admin_config_paths=("/admin/missing", "/admin/pref"))
        async with ComputeClient(newer) as client:
            assert (await client.get_config()).guest_mode is True
            changed = await client.set_guest_mode(True)
            assert changed.guest_mode is True


async def test_settings_forms_and_external_http_client(svc: LocalComputeService) -> None:
    base = svc.settings()
    client = ComputeClient(base, reconcile_interval=1.5)
    assert (
        client.settings.reconcile_interval == 1.5
        and client.settings.compute_url == base.compute_url
    )
    keywords = ComputeClient(compute_url=base.compute_url, mqtt_url=base.mqtt_url)
    assert keywords.settings == ClientSettings(compute_url=base.compute_url, mqtt_url=base.mqtt_url)
    assert "compute_url" in repr(keywords) and "new" in repr(keywords)
    async with httpx.AsyncClient() as http:
        async with ComputeClient(base, http_client=http, check_server=False) as c:
            assert c.server is None
            assert (await c.server_info()).status == "healthy"
        assert not http.is_closed  # ours to close, not the ComputeClient's
    await client.aclose()  # never opened: harmless
    with pytest.raises(ClientClosedError):
        client.subscribe_job_updates("x")


async def test_paho_backend_on_any_loop(svc: LocalComputeService, upload: Path) -> None:
    async with ComputeClient(svc.settings(), mqtt_backend="paho") as client:
        job = await client.wait((await client.submit("generic", upload)).job_id)
    assert job.status == "completed"


async def test_on_complete_is_not_called_when_the_job_vanishes(
    svc: LocalComputeService, upload: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # on_complete delivers only a JobResponse whose HTTP status is terminal: an MQTT terminal
    # event that the server cannot confirm (the job is gone) is logged, never delivered.
    async with ComputeClient(svc.settings()) as client:
        svc.faults.block_jobs()
        created = await client.submit("generic", upload)
        finals: list[JobResponse] = []
        client.subscribe_job_updates(created.job_id, on_complete=finals.append)
        # The job is gone before the client can fetch its final state.
        svc.state.jobs.pop(created.job_id, None)
        with caplog.at_level(logging.WARNING, logger="cl_client"):
            await svc.publish_event(created.job_id, "completed", progress=100)
            await wait_until(lambda: "could not be confirmed" in caplog.text)
        assert finals == []
        assert "404" in caplog.text
        svc.faults.clear()


class FlakyTransport(httpx.AsyncHTTPTransport):
    """The real transport, with a switch that makes job lookups fail to connect."""

    failing = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.failing and request.method == "GET" and request.url.path.startswith("/jobs/"):
            raise httpx.ConnectError("simulated network failure", request=request)
        return await super().handle_async_request(request)


@pytest.mark.slow
async def test_reconciler_survives_transport_errors(
    svc: LocalComputeService, upload: Path, caplog: pytest.LogCaptureFixture
) -> None:
    transport = FlakyTransport()
    async with (
        httpx.AsyncClient(transport=transport) as http,
        ComputeClient(svc.settings(reconcile_interval=0.1), http_client=http) as client,
    ):
        svc.faults.fail_jobs("silent failure")  # no MQTT event: only reconciliation can tell
        svc.faults.block_jobs()
        created = await client.submit("generic", upload)
        transport.failing = True
        with caplog.at_level(logging.DEBUG, logger="cl_client"):
            watch = client.watch(created.job_id)
            await wait_until(lambda: "simulated network failure" in caplog.text)
        transport.failing = False
        svc.faults.clear()  # the blocked job goes on and fails
        with anyio.fail_after(5):
            updates = [u async for u in watch]
        assert updates[-1].is_failed and updates[-1].error_message == "silent failure"


async def test_upload_and_download_errors(
    svc: LocalComputeService, upload: Path, tmp_path: Path
) -> None:
    async with ComputeClient(svc.settings()) as client:
        job = await client.wait((await client.submit("generic", upload, {"skip": None})).job_id)
        assert "skip" not in job.params
        target_dir = tmp_path / "dir-target"
        target_dir.mkdir()
        (target_dir / "result.json").mkdir()  # a directory where the file would go
        with pytest.raises(DownloadError, match="not a regular file"):
            await client.download_job_file(
                job.job_id, "output/result.json", target_dir, overwrite=True
            )
        with pytest.raises(DownloadError, match="relative"):
            await client.download_job_files(job.job_id, ["/etc/passwd"], tmp_path)
        unreadable = tmp_path / "secret.bin"
        unreadable.write_bytes(b"x")
        unreadable.chmod(0)
        try:
            import os

            if os.geteuid() != 0:  # root reads everything
                with pytest.raises(ParameterError, match="cannot read"):
                    await client.submit("generic", unreadable)
        finally:
            unreadable.chmod(0o600)


async def test_server_going_away_is_a_transport_error(
    local_compute_factory: Factory, upload: Path
) -> None:
    async with local_compute_factory(tasks={"generic": generic_task}) as service:
        settings = service.settings()
    with pytest.raises(TransportError, match="is the compute service running"):
        async with ComputeClient(settings):
            pass


async def test_unwrap_group_keeps_real_errors() -> None:
    error = ValueError("x")
    assert unwrap_group(ExceptionGroup("g", [error])) is error
    nested = BaseExceptionGroup("outer", [ExceptionGroup("inner", [error])])
    assert unwrap_group(nested) is error
    two = ExceptionGroup("g", [ValueError("a"), KeyError("b")])
    assert unwrap_group(two) is two
    assert unwrap_group(error) is error
    cancelled = anyio.get_cancelled_exc_class()
    caught: list[BaseException] = []
    with anyio.CancelScope() as scope:
        scope.cancel()
        try:
            await anyio.lowlevel.checkpoint()
        except cancelled as exc:
            caught.append(exc)
            raise
    only_cancel = BaseExceptionGroup("c", caught)
    assert unwrap_group(only_cancel) is caught[0]


async def test_client_keywords_are_checked_before_anything_starts() -> None:
    """A misspelt keyword or a bad value is a ParameterError naming it (ClientSettings fields
    are typed keywords: see SettingsOverrides)."""
    with pytest.raises(
        ParameterError, match=r"unknown setting 'reconcile_intervall'.*'reconcile_interval'"
    ):
        ComputeClient(**cast(SettingsOverrides, {"reconcile_intervall": 2}))
    with pytest.raises(ParameterError, match="reconcile_interval"):
        ComputeClient(reconcile_interval=-1)
    with pytest.raises(ParameterError, match="compute_url"):
        ComputeClient(compute_url="localhost:8002")
    with pytest.raises(ParameterError, match="mqtt_url"):
        ComputeClient(mqtt_url="ftp://broker")
    with pytest.raises(ParameterError, match="mqtt_backend"):
        ComputeClient(mqtt_backend=cast(Literal["auto"], "gevent"))
    with pytest.raises(ParameterError, match="ClientSettings or None"):
        ComputeClient(cast(ClientSettings, "http://localhost:8002"))
    with pytest.raises(ParameterError, match="poll_interval"):
        ClientSettings.from_env({}, poll_interval=0)
    assert (
        ClientSettings.from_env({"COMPUTE_URL": "http://h:1"}, poll_interval=2).poll_interval == 2
    )


async def test_statistics_are_a_snapshot_and_aclose_takes_no_arguments(
    svc: LocalComputeService, upload: Path
) -> None:
    client = ComputeClient(svc.settings())
    await client.__aenter__()
    try:
        before = client.statistics()
        assert before.mqtt_connected and before.updates_received == 0
        job = await client.submit("generic", upload, wait=True, timeout=30)
        assert job.status == "completed"
        after = client.statistics()
        assert after.updates_accepted > before.updates_accepted == 0  # the snapshot did not move
        assert after.mqtt_messages > 0 and after.watched_jobs == 0 and after.workers == 1
        with pytest.raises(dataclasses.FrozenInstanceError):
            after.reconnects = 5  # pyright: ignore[reportAttributeAccessIssue]
    finally:
        await client.aclose()
    await client.aclose()  # idempotent
    assert not client.statistics().mqtt_connected
    assert list(inspect.signature(ComputeClient.aclose).parameters) == ["self"]
