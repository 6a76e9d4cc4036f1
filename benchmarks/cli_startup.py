"""How long ``cl-client --help`` takes, against bare Python startup on the same machine.

::

    uv run python benchmarks/cli_startup.py            # median of 10 cold runs each
    uv run python benchmarks/cli_startup.py --runs 30

Each run is a new process (``python -m cl_client ...`` and the ``cl-client`` script when it
is installed), so imports are paid every time; the byte-code caches are warm, as they are for
anyone who ran the command once. Target: ``--help`` under 150 ms above ``python -c pass``.
The script also lists which heavy modules ``--help`` imported (it should be none).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import cast

HEAVY = ("httpx", "pydantic", "paho", "aiomqtt", "anyio", "rich", "cl_client.testing", "fastapi")

PROBE = """
import json, sys
from cl_client.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps([m for m in {heavy!r} if m in sys.modules]), file=sys.stderr)
"""


def median_seconds(command: Sequence[str], runs: int) -> float:
    """The median wall time of ``runs`` runs of ``command`` (after one warm-up run)."""
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    times: list[float] = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def heavy_imports(args: Sequence[str]) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    loaded = cast(list[str], json.loads(done.stderr.strip().splitlines()[-1]))
    return loaded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=10, help="cold runs per command")
    runs: int = parser.parse_args().runs  # pyright: ignore[reportAny]

    python = sys.executable
    commands: list[tuple[str, list[str]]] = [
        ("python -c pass", [python, "-c", "pass"]),
        ("python -m cl_client --help", [python, "-m", "cl_client", "--help"]),
        ("python -m cl_client hash --help", [python, "-m", "cl_client", "hash", "--help"]),
        (
            "python -m cl_client hash compute --help",
            [python, "-m", "cl_client", "hash", "compute", "--help"],
        ),
    ]
    script = shutil.which("cl-client", path=os.path.dirname(python)) or shutil.which("cl-client")
    if script is not None:
        commands.insert(1, ("cl-client --help", [script, "--help"]))

    print(f"median of {runs} cold runs, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    base = 0.0
    for label, command in commands:
        seconds = median_seconds(command, runs)
        if label == "python -c pass":
            base = seconds
            print(f"  {label:<42} {seconds * 1000:7.1f} ms")
        else:
            extra = (seconds - base) * 1000
            print(f"  {label:<42} {seconds * 1000:7.1f} ms   (+{extra:.1f} ms over bare Python)")
    for args in (["--help"], ["hash", "compute", "--help"]):
        loaded = heavy_imports(args)
        print(f"heavy modules imported by {' '.join(args)}: {', '.join(loaded) or 'none'}")


if __name__ == "__main__":
    main()
