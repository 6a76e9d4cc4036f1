"""Running ``cl-client`` in the tests: in-process (``cl_client.cli.run``) and as a real
subprocess (``python -m cl_client``)."""

from __future__ import annotations

import io
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import anyio

from cl_client.cli import run
from cl_client.testing import LocalComputeService

__all__ = ["CliResult", "cli", "cli_process", "service_args", "subprocess_env"]

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class CliResult:
    code: int
    stdout: str
    stderr: str

    def records(self) -> list[dict[str, object]]:
        """The NDJSON records on stdout."""
        return [
            cast(dict[str, object], json.loads(line))
            for line in self.stdout.splitlines()
            if line.strip()
        ]

    def record(self) -> dict[str, object]:
        """The only NDJSON record on stdout."""
        (only,) = self.records()
        return only

    def __str__(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.stdout}--- stderr\n{self.stderr}"


def service_args(svc: LocalComputeService) -> list[str]:
    """Root options pointing at a running local service."""
    return ["--compute-url", svc.compute_url, "--mqtt-url", svc.mqtt_url]


async def cli(*args: str | os.PathLike[str]) -> CliResult:
    """Run ``cl-client args`` in this process and event loop."""
    out, err = io.StringIO(), io.StringIO()
    code = await run([os.fspath(a) for a in args], stdout=out, stderr=err)
    return CliResult(code, out.getvalue(), err.getvalue())


def subprocess_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a ``cl-client`` subprocess: no settings inherited from the caller."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in (
            "COMPUTE_URL",
            "MQTT_URL",
            "AUTH_URL",
            "CL_USERNAME",
            "CL_PASSWORD",
            "CL_CLIENT_BACKEND",
            "CL_PROFILE",
        )
        and not k.startswith("COV_")
    }
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    env.update(extra or {})
    return env


async def cli_process(
    *args: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    backend: str | None = None,
    timeout: float = 120,
) -> CliResult:
    """Run ``python -m cl_client args`` as a real subprocess."""
    command: Sequence[str] = [sys.executable, "-m", "cl_client", *(os.fspath(a) for a in args)]
    extra = dict(env or {})
    if backend is not None:
        extra["CL_CLIENT_BACKEND"] = backend
    with anyio.fail_after(timeout):
        done = await anyio.run_process(command, check=False, env=subprocess_env(extra))
    return CliResult(done.returncode, done.stdout.decode(), done.stderr.decode())
