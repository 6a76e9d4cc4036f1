"""A stand-in compute server for the fan-out benchmark: every job it is asked about is queued.

Usage: python benchmarks/_jobs_server.py PORT

Answers ``GET /jobs/{id}`` with a queued JobResponse (so a client's reconciler has real work to
do, as with a batch waiting behind busy workers) and ``GET /stats`` with the number of job
requests answered so far. A separate process, so serving costs the measured client nothing.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_count = 0
_lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like a real server

    def do_GET(self) -> None:
        global _count
        if self.path == "/stats":
            body = json.dumps({"job_reads": _count}).encode()
        elif self.path.startswith("/jobs/"):
            with _lock:
                _count += 1
            job_id = self.path.removeprefix("/jobs/")
            now = int(time.time() * 1000)
            body = json.dumps(
                {
                    "job_id": job_id,
                    "task_type": "generic",
                    "status": "queued",
                    "progress": 0,
                    "params": {},
                    "task_output": None,
                    "error_message": None,
                    "priority": 5,
                    "created_at": now,
                    "updated_at": now,
                    "started_at": None,
                    "completed_at": None,
                }
            ).encode()
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def main(argv: list[str]) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", int(argv[0])), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
