"""A Postmark-like send API on 127.0.0.1, in its own process, for the ESP rows.

    python -m bench.esp_sink [DELAY_MS]   # prints "PORT <n>", then serves until killed

``POST /email`` answers as Postmark does (200, its JSON with a MessageID) and
counts each recipient; ``GET /tally`` returns the counts and the number of
connections, so ``run.py`` checks that every message arrived exactly once.
It runs in a process of its own so that its work never shares the measured
process's interpreter.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench.sink import Tally

ROOT = Path(__file__).resolve().parent.parent


def serve(delay: float = 0.0) -> None:
    """Serve until killed; each answer waits ``delay`` seconds (an ESP's own latency)."""
    counts: Counter[str] = Counter()
    connections = [0]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            # Answer at once: Nagle's algorithm against the client's delayed ACK
            # would hold each answer's body back by tens of milliseconds.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connections[0] += 1

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            data = json.loads(body)
            to = [a.strip() for a in str(data.get("To", "")).split(",") if a.strip()]
            counts.update(to)
            if delay:
                time.sleep(delay)
            answer = json.dumps(
                {
                    "To": data.get("To", ""),
                    "SubmittedAt": "2026-11-30T12:00:00.0000000-05:00",
                    "MessageID": str(uuid.uuid4()),
                    "ErrorCode": 0,
                    "Message": "OK",
                }
            ).encode()
            self._reply(answer)

        def do_GET(self) -> None:
            self._reply(json.dumps({"counts": counts, "connections": connections[0]}).encode())

        def _reply(self, data: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    sys.stdout.write(f"PORT {httpd.server_address[1]}\n")
    sys.stdout.flush()
    httpd.serve_forever()


class ESPSink:
    """One esp_sink process; use as a context manager."""

    def __init__(self, delay_ms: int = 0) -> None:
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0
        self.delay_ms = delay_ms

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def __enter__(self) -> ESPSink:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.esp_sink", str(self.delay_ms)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"bench.esp_sink did not start: {line!r}")
        self.port = int(line.split()[1])
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)

    def tally(self, expected: list[str]) -> Tally:
        with urllib.request.urlopen(self.url + "tally", timeout=10) as answer:  # noqa: S310
            data: dict[str, Any] = json.load(answer)
        counts = data["counts"]
        return Tally(
            messages=sum(counts.values()),
            sessions=int(data["connections"]) - 1,  # the tally's own connection
            missing=[r for r in expected if r not in counts],
            duplicated=sorted(r for r, c in counts.items() if c > 1),
        )


if __name__ == "__main__":
    serve(int(sys.argv[1]) / 1000 if len(sys.argv) > 1 else 0.0)
