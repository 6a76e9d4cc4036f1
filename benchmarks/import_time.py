"""What ``import cl_client`` costs a script, as a whole process, beside bare Python startup.

Each measurement starts a fresh interpreter (``python -c ...``) and times it from the outside;
the rows alternate so that a busy machine disturbs them alike, and the best run of each is shown
(the least disturbed). ``import cl_client`` itself loads nothing (PEP 562); the next rows are what
a script that submits and watches jobs pays before it enters the client (httpx and the HTTP layer
load then, plugins and auth when used), and the last line lists the modules still unloaded.
Each row is measured twice: as the machine is set up (where ``PYTHONDONTWRITEBYTECODE`` is set,
as on the reference machine, every process compiles every module it imports), and with the
bytecode already cached (a fresh ``PYTHONPYCACHEPREFIX`` written by one run first), which is
what a process pays after an install that compiles bytecode, or after any earlier run.

Run: ``uv run python benchmarks/import_time.py [--runs 15]``. Target (issue 13): ``import
cl_client`` at most 0.35 s as a process on the reference machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import cast

CASES = {
    "bare python": "pass",
    "import cl_client": "import cl_client",
    "from cl_client import ComputeClient": "from cl_client import ComputeClient",
    "+ ComputeClient(...)": (
        "from cl_client import ComputeClient; ComputeClient(compute_url='http://h:1')"
    ),
    "+ a plugin client": (
        "from cl_client import ComputeClient; ComputeClient(compute_url='http://h:1').hash"
    ),
    "import httpx": "import httpx",
    "import pydantic": "import pydantic",
}

LAZY = [
    "httpx",
    "cl_client._transports.http",
    "cl_client.plugins._hash",
    "cl_client.plugins._results",
    "cl_client.auth._client",
    "cl_client.auth._session",
    "cl_client.testing",
    "paho",
    "aiomqtt",
]
"""Modules a script that builds a client has no use for until it enters it or uses them."""


def run(code: str, env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    return time.perf_counter() - start


def cached_env(directory: str) -> dict[str, str]:
    """The environment with bytecode written to (and read from) ``directory``: what a process
    pays once an install or an earlier run has compiled the modules."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = directory
    return env


def loaded_after_import() -> list[str]:
    probe = f"import sys, cl_client; print(' '.join(m for m in {LAZY!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    ).stdout
    return out.split()


def main() -> None:
    parser = argparse.ArgumentParser(description="Import time of cl_client as a process.")
    parser.add_argument("--runs", type=int, default=15, help="runs per row (default 15)")
    runs = cast(int, parser.parse_args().runs)
    times: dict[str, list[float]] = {name: [] for name in CASES}
    cached: dict[str, list[float]] = {name: [] for name in CASES}
    with tempfile.TemporaryDirectory() as directory:
        env = cached_env(directory)
        for code in CASES.values():
            run(code, env)  # writes the bytecode
        for _ in range(runs):
            for name, code in CASES.items():
                times[name].append(run(code))
                cached[name].append(run(code, env))
    bare, bare_cached = min(times["bare python"]), min(cached["bare python"])
    setup = (
        "PYTHONDONTWRITEBYTECODE is set: every process compiles what it imports"
        if os.environ.get("PYTHONDONTWRITEBYTECODE")
        else "bytecode is written to __pycache__ as usual"
    )
    print(f"process wall time, best and median of {runs} runs ({sys.executable})")
    print(f"as this machine is set up ({setup}); cached: from a bytecode cache written first")
    print(
        f"{'':<36} {'best s':>8} {'median s':>9} {'minus bare':>11}   "
        f"{'cached best':>11} {'minus bare':>11}"
    )
    for name, values in times.items():
        best = min(values)
        median = statistics.median(values)
        best_cached = min(cached[name])
        print(
            f"{name:<36} {best:>8.3f} {median:>9.3f} {best - bare:>11.3f}   "
            f"{best_cached:>11.3f} {best_cached - bare_cached:>11.3f}"
        )
    loaded = loaded_after_import()
    print(
        f"loaded by building a ComputeClient: {', '.join(loaded) or 'none'} (of {', '.join(LAZY)})"
    )


if __name__ == "__main__":
    main()
