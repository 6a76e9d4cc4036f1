"""Run a throwaway mosquitto broker on 127.0.0.1 for tests, CI and benchmarks.

Three ways to use it::

    with running_mosquitto() as broker:          # a sync context manager
        url = broker.url                         # "mqtt://127.0.0.1:PORT"
        broker.kill()                            # fault tests: SIGKILL ...
        broker.start()                           # ... and start again on the same port

    mosquitto_url = pytest.fixture(mosquitto_fixture)   # a pytest fixture (skips without mosquitto)

    python -m tests.mosquitto                    # print a URL and keep a broker up until Ctrl-C

From benchmarks and scripts run at the repository root: ``from tests.mosquitto import ...``.

Each broker gets a temporary directory with its config (``listener <port> 127.0.0.1``,
``allow_anonymous true``, ``persistence false``), optionally a TLS listener (``certfile``/
``keyfile``) or a password file. The executable is ``$MOSQUITTO`` or ``mosquitto`` on PATH (or
``/usr/sbin/mosquitto``). Only 127.0.0.1 is ever bound.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Generator, Iterator, Mapping
from pathlib import Path

__all__ = [
    "Mosquitto",
    "find_mosquitto",
    "free_port",
    "mosquitto_fixture",
    "running_mosquitto",
]

HOST = "127.0.0.1"


def find_mosquitto() -> str | None:
    """The mosquitto executable, or None when it is not installed."""
    configured = os.environ.get("MOSQUITTO")
    if configured:
        return configured
    found = shutil.which("mosquitto")
    if found:
        return found
    for candidate in (
        "/usr/sbin/mosquitto",
        "/usr/local/sbin/mosquitto",
        "/opt/homebrew/sbin/mosquitto",
    ):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        address: tuple[str, int] = sock.getsockname()  # pyright: ignore[reportAny]
        return address[1]


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.2):
            return True
    except OSError:
        return False


class Mosquitto:
    """One mosquitto process on 127.0.0.1; ``start()`` again reuses the same port."""

    def __init__(
        self,
        *,
        port: int | None = None,
        certfile: str | os.PathLike[str] | None = None,
        keyfile: str | os.PathLike[str] | None = None,
        users: Mapping[str, str] | None = None,
        extra_config: str = "",
        executable: str | None = None,
    ) -> None:
        found = executable or find_mosquitto()
        if found is None:
            raise FileNotFoundError("mosquitto is not installed (set $MOSQUITTO or add it to PATH)")
        self.executable = found
        self.port = port if port is not None else free_port()
        self.tls = certfile is not None
        self._certfile = certfile
        self._keyfile = keyfile
        self._users = dict(users or {})
        self._extra_config = extra_config
        self._dir = Path(tempfile.mkdtemp(prefix="cl-client-mosquitto-"))
        self._process: subprocess.Popen[bytes] | None = None
        self._log = self._dir / "mosquitto.log"

    @property
    def url(self) -> str:
        scheme = "mqtts" if self.tls else "mqtt"
        return f"{scheme}://{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _write_config(self) -> Path:
        lines = [
            f"listener {self.port} {HOST}",
            "persistence false",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            # mosquitto drops root privileges to "mosquitto" by default, which then cannot read
            # the files in our private temporary directory.
            lines.append("user root")
        if self._users:
            passwords = self._dir / "passwords"
            passwords.write_text("")
            for user, password in self._users.items():
                subprocess.run(
                    [_mosquitto_passwd(), "-b", str(passwords), user, password],
                    check=True,
                    capture_output=True,
                )
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        else:
            lines.append("allow_anonymous true")
        if self._certfile is not None:
            lines += [f"certfile {self._certfile}", f"keyfile {self._keyfile}"]
        if self._extra_config:
            lines.append(self._extra_config)
        config = self._dir / "mosquitto.conf"
        config.write_text("\n".join(lines) + "\n")
        return config

    def start(self, timeout: float = 10.0) -> None:
        """Start the broker and wait until it accepts TCP connections."""
        if self.running:
            return
        config = self._write_config()
        with self._log.open("ab") as log:
            self._process = subprocess.Popen(
                [self.executable, "-c", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while not _accepts(self.port):
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"mosquitto exited with code {self._process.returncode}: {self.log()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"mosquitto did not listen on {self.url} within {timeout} s")
            time.sleep(0.02)

    def log(self) -> str:
        """What mosquitto wrote to stdout/stderr so far."""
        try:
            return self._log.read_text(errors="replace").strip()
        except OSError:
            return ""

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate the broker (SIGTERM, then SIGKILL)."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def kill(self) -> None:
        """SIGKILL the broker: clients see their connections drop without a goodbye."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def close(self) -> None:
        """Stop the broker and remove its temporary directory."""
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> Mosquitto:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _mosquitto_passwd() -> str:
    return shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"


@contextlib.contextmanager
def running_mosquitto(
    *,
    certfile: str | os.PathLike[str] | None = None,
    keyfile: str | os.PathLike[str] | None = None,
    users: Mapping[str, str] | None = None,
    extra_config: str = "",
    attempts: int = 3,
) -> Generator[Mosquitto]:
    """A started broker on a free port, stopped and cleaned up afterwards.

    A port taken between choosing and binding it is retried on another port.
    """
    for attempt in range(attempts):
        broker = Mosquitto(
            certfile=certfile, keyfile=keyfile, users=users, extra_config=extra_config
        )
        try:
            broker.start()
        except (RuntimeError, TimeoutError):
            broker.close()
            if attempt == attempts - 1:
                raise
            continue
        try:
            yield broker
        finally:
            broker.close()
        return


def mosquitto_fixture() -> Iterator[str]:
    """A pytest-friendly generator: ``mosquitto_url = pytest.fixture(mosquitto_fixture)``.

    Skips the test when mosquitto is not installed.
    """
    if find_mosquitto() is None:
        import pytest

        pytest.skip("mosquitto is not installed")
    with running_mosquitto() as broker:
        yield broker.url


def main() -> None:  # pragma: no cover - manual use
    with running_mosquitto() as broker:
        print(broker.url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while broker.running:
                time.sleep(1)
    sys.exit(0)


if __name__ == "__main__":  # pragma: no cover
    main()
