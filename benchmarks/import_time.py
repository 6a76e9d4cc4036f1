"""What ``import cl_client`` costs a script, as a whole process, beside bare Python startup.

Each measurement starts a fresh interpreter (``python -c ...``) and times it from the outside;
the rows alternate so that a busy machine disturbs them alike, and the best run of each is shown
(the least disturbed). The last rows import what a script that submits and watches jobs uses
next, and the modules that stay unloaded until used.

Run: ``uv run python benchmarks/import_time.py [--runs 15]``. Target (issue 13): ``import
cl_client`` at most 0.35 s as a process on the reference machine.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from typing import cast

CASES = {
    "bare python": "pass",
    "import cl_client": "import cl_client",
    "ComputeClient()": "import cl_client; cl_client.ComputeClient(compute_url='http://h:1')",
    "+ a plugin client": (
        "import cl_client; c = cl_client.ComputeClient(compute_url='http://h:1'); c.hash"
    ),
    "import httpx": "import httpx",
    "import pydantic": "import pydantic",
}

LAZY = ["cl_client.plugins", "cl_client.auth", "cl_client.testing", "httpx", "paho", "aiomqtt"]


def run(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - start


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
    for _ in range(runs):
        for name, code in CASES.items():
            times[name].append(run(code))
    bare = min(times["bare python"])
    print(f"process wall time, best and median of {runs} runs ({sys.executable})")
    print(f"{'':<20} {'best s':>8} {'median s':>9} {'minus bare':>11}")
    for name, values in times.items():
        best = min(values)
        print(f"{name:<20} {best:>8.3f} {statistics.median(values):>9.3f} {best - bare:>11.3f}")
    loaded = loaded_after_import()
    print(f"loaded by `import cl_client` among {', '.join(LAZY)}: {', '.join(loaded) or 'none'}")


if __name__ == "__main__":
    main()
