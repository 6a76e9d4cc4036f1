"""``cl_client.testing`` without the 'local' extra: the broker works, the services say what to
install, and the command line turns that into a one-line usage error (exit 2, no traceback).

Each case runs in a fresh interpreter with the extra's packages blocked (``sys.modules[name] =
None`` makes their import fail as if they were not installed).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_util import subprocess_env

# Each starts an interpreter (about half a second): not for the fast subset.
pytestmark = pytest.mark.slow

BLOCK = "import sys\nfor name in ('fastapi', 'hypercorn'): sys.modules[name] = None\n"


def run_python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCK + code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env=subprocess_env(),
        check=False,
    )


def test_the_embedded_broker_needs_nothing_from_the_extra(tmp_path: Path) -> None:
    result = run_python(
        "import anyio\n"
        "from cl_client.testing import EmbeddedBroker\n"
        "async def main():\n"
        "    async with EmbeddedBroker() as broker:\n"
        "        print(broker.url)\n"
        "anyio.run(main)\n"
        "print('fastapi' in sys.modules and sys.modules['fastapi'] is not None)\n",
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    url, fastapi_loaded = result.stdout.split()
    assert url.startswith("mqtt://127.0.0.1:")
    assert fastapi_loaded == "False"


@pytest.mark.parametrize("name", ["LocalComputeService", "LocalAuthService", "ffmpeg_path"])
def test_the_services_name_the_extra_to_install(tmp_path: Path, name: str) -> None:
    result = run_python(
        "try:\n"
        f"    from cl_client.testing import {name}\n"
        "except ModuleNotFoundError as exc:\n"
        "    print(exc.name, '|', exc)\n",
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    missing, _, message = result.stdout.strip().partition(" | ")
    assert missing == "fastapi"
    assert "needs the 'local' extra (fastapi is not installed)" in message
    assert "pip install 'cl-client[local]'" in message


@pytest.mark.parametrize(
    "args",
    [["--local", "hash", "compute", "photo.jpg"], ["local", "serve"]],
    ids=["--local", "local serve"],
)
def test_the_command_line_says_what_to_install(tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "photo.jpg").write_bytes(b"\xff\xd8\xff")
    result = run_python(f"from cl_client.cli import main\nmain({args!r})\n", tmp_path)
    assert result.returncode == 2, result
    assert "pip install 'cl-client[local]'" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
