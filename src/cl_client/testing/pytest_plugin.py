"""pytest plugin: fixtures for a running local compute service.

Load it from a ``conftest.py``::

    pytest_plugins = ["cl_client.testing.pytest_plugin"]

Fixtures (async, for the anyio pytest plugin; they run on whichever ``anyio_backend`` is active):

* ``local_compute``: a running :class:`~cl_client.testing.LocalComputeService` with the real
  server's defaults (the nine plugins, one worker, guest mode on).
* ``local_compute_factory``: ``async with local_compute_factory(workers=2, ...) as svc:`` for
  services with other options (any :class:`LocalComputeService` keyword argument).

Both use the broker named by the environment variable ``CL_CLIENT_TEST_MQTT_URL`` when it is set
(for example mosquitto in CI), and an embedded broker otherwise.

This module is imported before coverage starts, so it imports nothing from ``cl_client`` at
module level.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from cl_client.testing import LocalComputeService

MQTT_URL_ENV = "CL_CLIENT_TEST_MQTT_URL"


def external_mqtt_url() -> str | None:
    """The broker given by ``CL_CLIENT_TEST_MQTT_URL``, or None (use an embedded broker)."""
    return os.environ.get(MQTT_URL_ENV) or None


@pytest.fixture
def local_compute_factory() -> Callable[..., LocalComputeService]:
    """Make :class:`LocalComputeService` instances (not started) using the test broker."""
    from cl_client.testing import LocalComputeService

    def make(**kwargs: object) -> LocalComputeService:
        if "mqtt_url" not in kwargs:
            kwargs["mqtt_url"] = external_mqtt_url()
        return LocalComputeService(**kwargs)  # pyright: ignore[reportArgumentType]

    return make


@pytest.fixture
async def local_compute(
    local_compute_factory: Callable[..., LocalComputeService],
) -> AsyncIterator[LocalComputeService]:
    """A running local compute service (default options)."""
    async with local_compute_factory() as service:
        yield service
