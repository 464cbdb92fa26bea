"""Postfix's smtp-sink as the relay: started on a free 127.0.0.1 port, counted exactly.

Every transaction is appended to one dump file (``-D``) after a marker line,
and the dump is read back to check that each expected recipient arrived
exactly once. The running counters (``-c``) give the number of SMTP sessions
and let a waiting process see how many messages have arrived so far.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

SMTP_SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
MARKER = "X-Bench-Transaction"
_COUNTERS = re.compile(rb"sess=(\d+) quit=(\d+) mesg=(\d+)")


def available() -> bool:
    return os.access(SMTP_SINK, os.X_OK)


def counters(path: Path) -> tuple[int, int]:
    """(sessions ended, messages received) from a ``-c`` output file."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - 200))
            tail = f.read()
    except FileNotFoundError:
        return 0, 0
    found = _COUNTERS.findall(tail)
    if not found:
        return 0, 0
    sess, _quit, mesg = found[-1]
    return int(sess), int(mesg)


def wait_for_messages(path: Path, count: int, timeout: float) -> float:
    """Block until the sink has received ``count`` messages; return the moment it did."""
    deadline = time.monotonic() + timeout
    while counters(path)[1] < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"smtp-sink got {counters(path)[1]} of {count} messages")
        time.sleep(0.005)
    return time.perf_counter()


@dataclass
class Tally:
    """What the sink received, checked against the expected recipients."""

    messages: int
    sessions: int
    missing: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        return not self.missing and not self.duplicated

    def describe(self) -> str:
        return (
            f"{self.messages} messages in {self.sessions} sessions, "
            f"{len(self.missing)} missing (first: {self.missing[:3]}), "
            f"{len(self.duplicated)} duplicated (first: {self.duplicated[:3]})"
        )


class SmtpSink:
    """One smtp-sink process; use as a context manager."""

    def __init__(self, *, delay: int = 0, workdir: Path | None = None) -> None:
        self.delay = delay
        self.dir = Path(tempfile.mkdtemp(prefix="smtp-sink-", dir=workdir))
        # smtp-sink drops root privileges to "nobody", who must be able to write the dump.
        self.dir.chmod(0o777)
        self.dump = self.dir / "dump"
        self.counter_file = self.dir / "counters"
        self.port = 0
        self.probes = 0  # sessions opened by the start-up check, not by the client
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> SmtpSink:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def start(self) -> None:
        for _ in range(20):
            port = _free_port()
            args = [SMTP_SINK, "-c", "-D", str(self.dump), "-S", MARKER + r"\n"]
            if os.geteuid() == 0:
                args += ["-u", "nobody"]
            if self.delay:
                args += ["-w", str(self.delay)]
            args += [f"127.0.0.1:{port}", "256"]
            out = open(self.counter_file, "wb")  # noqa: SIM115 (owned by the child)
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.PIPE)
            out.close()
            if _wait_listening(port, self.proc):
                self.port, self.probes = port, 1
                return
            self.proc.kill()
            self.proc.wait()
        raise RuntimeError("smtp-sink did not start on any free port")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def received(self) -> int:
        return counters(self.counter_file)[1]

    def tally(self, expected: list[str], *, settle: float = 5.0) -> Tally:
        """Recipients received versus ``expected``, once the counters stop moving."""
        deadline = time.monotonic() + settle
        last = None
        while time.monotonic() < deadline:
            now = counters(self.counter_file)
            if now == last:
                break
            last = now
            time.sleep(0.05)
        sessions, _received = counters(self.counter_file)
        seen: Counter[str] = Counter()
        if self.dump.exists():
            with open(self.dump, "rb") as f:
                for line in f:
                    if line.startswith(b"X-Rcpt-Args: <"):
                        seen[line[14:].split(b">", 1)[0].decode()] += 1
        wanted = set(expected)
        missing = [a for a in expected if seen[a] == 0]
        duplicated = [a for a, n in seen.items() if n > 1 or a not in wanted]
        return Tally(
            messages=sum(seen.values()),
            sessions=sessions - self.probes,
            missing=missing,
            duplicated=duplicated,
        )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(port: int, proc: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.recv(100)  # the greeting; the probe counts as one session
                s.sendall(b"QUIT\r\n")
                s.recv(100)
            return True
        except OSError:
            time.sleep(0.02)
    return False
