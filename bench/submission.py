"""The submission listener under load: Postfix's smtp-source pushes N messages
over S parallel sessions to ``smtprelay_serve`` (every message committed to
the queue before its 250) and, in the same rounds, to a bare aiosmtpd server
that discards what it receives; the figure is the ratio of the two rates.
Then the listener's peak memory with C connections open at once.

``python -m bench.submission bare PORT`` runs the bare server (used by run.py).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.report import Target

ROOT = Path(__file__).resolve().parent.parent
SMTP_SOURCE = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
TARGET_RATIO = 0.5
MESSAGE_BYTES = 2000


def available() -> bool:
    return Path(SMTP_SOURCE).exists()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _push(port: int, n: int, sessions: int) -> float:
    """Seconds smtp-source takes to have ``n`` messages accepted."""
    command = [
        SMTP_SOURCE, "-s", str(sessions), "-m", str(n), "-d", "-l", str(MESSAGE_BYTES),
        "-f", "src@bench.example", "-t", "sink@example.net", "-S", "bench",
        "-M", "source.example", f"127.0.0.1:{port}",
    ]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"smtp-source failed: {proc.stderr.strip()[-500:]}")
    return seconds


def _bare(port: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bench.submission", "bare", str(port)])


def _listener(bench: Any, url: str, port: int, threads: int) -> subprocess.Popen:
    env = bench.env("smtprelay", url, BENCH_SUBMISSION="1")
    command = [sys.executable, "-m", "django", "smtprelay_serve", "--threads", str(threads)]
    command += ["--listen", f"starttls://127.0.0.1:{port}"]
    return subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)


def _queued(bench: Any, url: str) -> int:
    result = bench.step("count-queued", bench.env("smtprelay", url))
    return int(result["queued"])


def throughput(bench: Any, db: Any, n: int, sessions: int, runs: int, threads: int) -> dict:
    """Messages accepted per second, the listener and the bare server, alternating."""
    rounds = []
    for i in range(runs):
        print(f"{db.label}: submission round {i + 1} of {runs} (N={n:,})", file=sys.stderr)
        port = _free_port()
        bare = _bare(port)
        try:
            _wait_port(port, bare)
            bare_s = _push(port, n, sessions)
        finally:
            _stop(bare)
        url = db.fresh("smtprelay")
        port = _free_port()
        listener = _listener(bench, url, port, threads)
        try:
            _wait_port(port, listener)
            listener_s = _push(port, n, sessions)
        finally:
            _stop(listener)
        stored = _queued(bench, url)
        db.drop(url)
        if stored != n:
            bench.exact_failures.append(f"{db.label} submission: {stored} of {n} queued")
        rounds.append({"bare_rate": n / bare_s, "listener_rate": n / listener_s, "stored": stored})
    ratios = [r["listener_rate"] / r["bare_rate"] for r in rounds]
    return {
        "rounds": rounds,
        "bare_rate": statistics.median(r["bare_rate"] for r in rounds),
        "listener_rate": statistics.median(r["listener_rate"] for r in rounds),
        "ratio": statistics.median(ratios),
        "n": n,
        "sessions": sessions,
        "load": os.getloadavg()[0],
    }


def memory(bench: Any, db: Any, connections: int, threads: int) -> dict[str, Any]:
    """The listener's peak RSS, idle and with ``connections`` clients past EHLO."""
    from bench.run import peak_rss_kb

    url = db.fresh("smtprelay")
    port = _free_port()
    listener = _listener(bench, url, port, threads)
    clients: list[socket.socket] = []
    try:
        _wait_port(port, listener)
        time.sleep(0.5)
        idle = peak_rss_kb(listener.pid)
        for _ in range(connections):
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            reader = sock.makefile("rb")
            reader.readline()
            sock.sendall(b"EHLO bench.example\r\n")
            while not reader.readline().startswith(b"250 "):
                pass
            clients.append(sock)
        time.sleep(0.5)
        peak = peak_rss_kb(listener.pid)
    finally:
        for sock in clients:
            sock.close()
        _stop(listener)
        db.drop(url)
    return {"connections": connections, "idle_kb": idle, "peak_kb": peak}


def table(label: str, figures: dict[str, Any], mem: dict[str, Any] | None) -> str:
    lines = [
        f"\n{label}: SMTP submission, smtp-source, {figures['n']:,} messages of "
        f"{MESSAGE_BYTES:,} bytes over {figures['sessions']} sessions (median of "
        f"{len(figures['rounds'])}; load {figures['load']:.2f})",
        f"  bare aiosmtpd (discards)     {figures['bare_rate']:>8,.0f} msg/s",
        f"  smtprelay_serve (queued)     {figures['listener_rate']:>8,.0f} msg/s"
        f"  ({figures['ratio']:.2f}x)",
    ]
    if mem:
        lines.append(
            f"  peak memory: {mem['idle_kb'] / 1024:,.1f} MB idle, "
            f"{mem['peak_kb'] / 1024:,.1f} MB with {mem['connections']} connections open"
        )
    return "\n".join(lines)


def target(label: str, figures: dict[str, Any]) -> Target:
    ratio = figures["ratio"]
    return Target(
        f"{label}: submission >= {TARGET_RATIO}x a bare aiosmtpd server",
        "PASS" if ratio >= TARGET_RATIO else "FAIL",
        f"{figures['listener_rate']:,.0f} vs {figures['bare_rate']:,.0f} msg/s ({ratio:.2f}x)",
    )


class _Discard:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 OK"


async def _serve_bare(port: int) -> None:
    from aiosmtpd.smtp import SMTP

    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(_Discard(), enable_SMTPUTF8=True), host="127.0.0.1", port=port
    )
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    if sys.argv[1:2] == ["bare"]:
        asyncio.run(_serve_bare(int(sys.argv[2])))
