"""Options of the real-server tier of the plugin tests (no cl_client import at module level).

The plugin and workflow tests run against the local compute service, and also against a real CL
Server when one is given:

* ``--compute-url`` / ``COMPUTE_URL`` (required) and ``--mqtt-url`` / ``MQTT_URL`` (default:
  ``mqtt://<compute host>:1883``);
* media from ``--media-dir`` / ``CL_CLIENT_TEST_MEDIA_DIR`` (default ``tests/media``), the files
  ``tests/media/MEDIA_SETUP.md`` describes (a missing file fails the test, naming the file and
  the guide).

The command-line options exist when this module is loaded as a plugin
(``pytest_plugins = ["tests.plugins_real_server"]`` in ``tests/conftest.py``, or
``uv run python -m pytest -p tests.plugins_real_server``); the environment variables always
work. Without a real server the real-server variants are not generated, and one test
(``test_plugins.py::test_real_server_tier``) is skipped saying what it needs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

import pytest

__all__ = [
    "MEDIA_ENV",
    "MEDIA_GUIDE",
    "NEEDS_REAL_SERVER",
    "RealServer",
    "TargetKind",
    "pytest_addoption",
    "real_server",
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
