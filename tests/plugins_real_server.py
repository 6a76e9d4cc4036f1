"""Options of the real-server tier of the plugin tests (no cl_client import at module level).

The plugin and workflow tests run against the local compute service, and also against a real CL
Server when one is given:

* ``--compute-url`` / ``COMPUTE_URL`` (required) and ``--mqtt-url`` / ``MQTT_URL`` (default:
  ``mqtt://<compute host>:1883``);
* media from ``--media-dir`` / ``CL_CLIENT_TEST_MEDIA_DIR`` (default ``tests/media``), the files
  ``tests/media/MEDIA_SETUP.md`` describes (a missing file fails the test, naming the file and
  the guide).

It also provides the ``target`` fixture (a :class:`tests.plugin_target.PluginTarget`),
parametrized over ``target_kind``: always the local service, and the real server when given.

The command-line options exist when this module is loaded as a plugin
(``pytest_plugins = ["tests.plugins_real_server"]`` in ``tests/conftest.py``, or
``uv run python -m pytest -p tests.plugins_real_server``); the environment variables always
work. Without a real server the real-server variants are not generated, and one test
(``test_plugins.py::test_real_server_tier``) is skipped saying what it needs.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

import pytest

if TYPE_CHECKING:
    from cl_client.testing import LocalComputeService
    from tests.plugin_target import PluginTarget

__all__ = [
    "MEDIA_ENV",
    "MEDIA_GUIDE",
    "NEEDS_REAL_SERVER",
    "RealServer",
    "TargetKind",
    "pytest_addoption",
    "pytest_generate_tests",
    "real_server",
    "target",
    "target_kinds",
]

TargetKind = Literal["local", "real"]
MEDIA_ENV = "CL_CLIENT_TEST_MEDIA_DIR"
MEDIA_GUIDE = "tests/media/MEDIA_SETUP.md"
NEEDS_REAL_SERVER = (
    "needs a real CL Server: set COMPUTE_URL (and MQTT_URL) or pass --compute-url/--mqtt-url"
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("cl-client real server")
    group.addoption("--compute-url", default=None, help="also run the plugin tests against it")
    group.addoption("--mqtt-url", default=None, help="the real server's MQTT broker")
    group.addoption("--media-dir", default=None, help=f"real-server test media ({MEDIA_GUIDE})")


@dataclass(frozen=True)
class RealServer:
    compute_url: str
    mqtt_url: str
    media_dir: str | None


def _option(config: pytest.Config, name: str, env: str) -> str | None:
    value = config.getoption(name, default=None)
    if isinstance(value, str) and value:
        return value
    return os.environ.get(env) or None


def real_server(config: pytest.Config) -> RealServer | None:
    """The real server given by options or environment, or None."""
    compute_url = _option(config, "--compute-url", "COMPUTE_URL")
    if compute_url is None:
        return None
    mqtt_url = _option(config, "--mqtt-url", "MQTT_URL")
    if mqtt_url is None:
        mqtt_url = f"mqtt://{urlsplit(compute_url).hostname or 'localhost'}:1883"
    return RealServer(compute_url, mqtt_url, _option(config, "--media-dir", MEDIA_ENV))


def target_kinds(config: pytest.Config) -> list[TargetKind]:
    """``["local"]``, plus ``"real"`` when a real server was given."""
    return ["local", "real"] if real_server(config) is not None else ["local"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "target_kind" in metafunc.fixturenames:
        kinds = target_kinds(metafunc.config)
        metafunc.parametrize(
            "target_kind",
            [pytest.param(k, marks=pytest.mark.real_server) if k == "real" else k for k in kinds],
        )


@pytest.fixture
async def target(
    target_kind: TargetKind,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    local_compute_factory: Callable[..., LocalComputeService],
) -> AsyncIterator[PluginTarget]:
    """Where a plugin test runs: the local service, or the real server given."""
    from tests.plugin_target import open_target  # imports cl_client: not at module level

    async with open_target(target_kind, request.config, tmp_path, local_compute_factory) as t:
        yield t
