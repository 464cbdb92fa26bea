"""Benchmark: django-smtprelay against one smtplib connection, side by side.

    python bench/run.py [--n 5000] [--runs 3] [--sqlite] [--postgres] [--skip-others]
                        [--one-n 2000] [--memory] [--large 100 [--large-mb 10]]
                        [--scale-workers 4] [--admin-scale] [--destinations] [--dkim 2000]
                        [--strict] [--json OUT]

See bench/README.md for what each figure means and the targets it checks.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import admin_scale, dkim, esp_sink, report, sink, submission, workload  # noqa: E402
from bench.databases import PostgreSQL, SQLite  # noqa: E402

OTHERS = {"post_office": "post_office", "mailer": "mailer"}  # subject -> import name


class StepFailed(RuntimeError):
    pass


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.broker = args.broker or default_broker(workdir)
        self.others = (
            []
            if args.skip_others
            else [s for s, module in OTHERS.items() if importlib.util.find_spec(module)]
        )
        self.exact_failures: list[str] = []

    # -- processes ----------------------------------------------------------

    def env(self, subject: str, database: str, port: int = 0, **extra: str) -> dict[str, str]:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "DJANGO_SETTINGS_MODULE": "bench.settings",
            "BENCH_SUBJECT": subject,
            "BENCH_DATABASE": database,
            "BENCH_SMTP_PORT": str(port),
            "BENCH_WORKDIR": str(self.workdir),
            "BENCH_BROKER": self.broker,
        }
        env.update(extra)
        return env

    def step(self, name: str, env: dict[str, str], *options: str) -> dict[str, Any]:
        return self.step_module("bench.scenarios", name, env, *options)

    def step_module(
        self, module: str, name: str, env: dict[str, str], *options: str, nice: bool = False
    ) -> dict[str, Any]:
        command = [sys.executable, "-m", module, name, *options]
        if nice and shutil.which("nice"):
            command = ["nice", "-n", "10", *command]
        proc = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
        return parse_result(name, proc.returncode, proc.stdout, proc.stderr)

    def check(self, label: str, tally: sink.Tally, n: int, in_db: int | None = None) -> None:
        problems = []
        if not tally.exact or tally.messages != n:
            problems.append(f"smtp-sink: {tally.describe()}")
        if in_db is not None and in_db != n:
            problems.append(f"the queue records {in_db} of {n} as sent")
        if problems:
            self.exact_failures.append(f"{label}: " + "; ".join(problems))
            print(f"  !! {label}: " + "; ".join(problems), file=sys.stderr)

    # -- scenarios ----------------------------------------------------------

    def baseline(self, db: Any, n: int) -> dict[str, Any]:
        with sink.SmtpSink(workdir=self.workdir) as relay:
            env = self.env("smtprelay", db.template("smtprelay"), relay.port)
            result = self.step("baseline", env, "--n", str(n))
            tally = relay.tally(workload.recipients(n))
        self.check("baseline", tally, n)
        return {
            "drain_rate": n / result["seconds"],
            "sessions": tally.sessions,
            "drain_rss_kb": result["maxrss_kb"],
        }

    def queue_then_drain(self, db: Any, subject: str, n: int) -> dict[str, Any]:
        database = db.fresh(subject)
        try:
            with sink.SmtpSink(workdir=self.workdir) as relay:
                env = self.env(subject, database, relay.port)
                queued = self.step("enqueue", env, "--n", str(n))
                drained = self.step("drain", env, "--n", str(n))
                tally = relay.tally(workload.recipients(n))
        finally:
            db.drop(database)
        self.check(subject, tally, n, drained["delivered_in_db"])
        return {
            "enqueue_rate": n / queued["seconds"],
            "drain_rate": n / drained["seconds"],
            "e2e_rate": n / (queued["seconds"] + drained["seconds"]),
            "sessions": tally.sessions,
            "enqueue_rss_kb": queued["maxrss_kb"],
            "drain_rss_kb": drained["maxrss_kb"],
        }

    def esp(self, db: Any, n: int) -> dict[str, dict[str, Any]]:
        """anymail's Postmark backend in a loop, then an ESP route draining the same messages."""
        expected = workload.recipients(n)
        with esp_sink.ESPSink(self.args.esp_delay) as api:
            env = self.env("smtprelay", db.template("smtprelay"), BENCH_ESP_URL=api.url)
            result = self.step("esp-baseline", env, "--n", str(n))
            tally = api.tally(expected)
        self.check("anymail backend", tally, n)
        baseline = {
            "drain_rate": n / result["seconds"],
            "cpu_ms": 1000 * result["cpu_seconds"] / n,
            "sessions": tally.sessions,
        }
        database = db.fresh("smtprelay")
        try:
            with esp_sink.ESPSink(self.args.esp_delay) as api:
                env = self.env("smtprelay", database, BENCH_ESP_URL=api.url)
                self.step("enqueue", env, "--n", str(n))
                drained = self.step("esp-drain", env, "--n", str(n))
                tally = api.tally(expected)
        finally:
            db.drop(database)
        self.check("ESP route", tally, n, drained["delivered_in_db"])
        route = {
            "drain_rate": n / drained["seconds"],
            "drain_ratio": (n / drained["seconds"]) / baseline["drain_rate"],
            "cpu_ms": 1000 * drained["cpu_seconds"] / n,
            "sessions": tally.sessions,
            "drain_rss_kb": drained["maxrss_kb"],
        }
        return {"esp_baseline": baseline, "esp_route": route}

    def enqueue_turns(self, db: Any, subjects: list[str], n: int, turns: int) -> dict[str, float]:
        """Messages per second of each queue's bulk call of ``n`` messages, the
        queues taking ``turns`` turns each, in alternating order, each turn a
        process of its own on a fresh database.

        One timed call per queue (a fraction of a second) swung with whatever
        else the machine did in that fraction: on SQLite the ratio between two
        queues went from 1.5 to 2.3 between runs. Taking turns, as ``send_one``
        does, gives every queue the same share of the load.
        """
        seconds = dict.fromkeys(subjects, 0.0)
        for i in range(turns):
            for subject in subjects if i % 2 == 0 else reversed(subjects):
                database = db.fresh(subject)
                try:
                    env = self.env(subject, database)
                    seconds[subject] += self.step("enqueue", env, "--n", str(n))["seconds"]
                finally:
                    db.drop(database)
        return {subject: turns * n / seconds[subject] for subject in subjects}

    def send_one(self, db: Any, subjects: list[str], n: int, rounds: int = 8) -> dict[str, float]:
        """Messages per second of ``n`` calls that each queue one message, per subject.

        The queues take turns, ``n / rounds`` calls at a time, each on its own
        database: a machine's load drifts over seconds (a disk others flush
        to), and taking turns gives every queue the same share of it.
        """
        databases = {subject: db.fresh(subject) for subject in subjects}
        seconds = dict.fromkeys(subjects, 0.0)
        calls = dict.fromkeys(subjects, 0)
        try:
            for i in range(rounds):
                chunk = n // rounds + (1 if i < n % rounds else 0)
                for subject in subjects if i % 2 == 0 else reversed(subjects):
                    env = self.env(subject, databases[subject])
                    result = self.step(
                        "send-one", env, "--n", str(chunk), "--skip", str(calls[subject])
                    )
                    seconds[subject] += result["seconds"]
                    calls[subject] += chunk
        finally:
            for database in databases.values():
                db.drop(database)
        return {subject: calls[subject] / seconds[subject] for subject in subjects}

    def celery(self, db: Any, n: int) -> dict[str, Any]:
        database = db.fresh("smtprelay")
        queue = f"smtprelay-bench-{uuid.uuid4().hex[:8]}"
        ready = self.workdir / f"{queue}.ready"
        try:
            with sink.SmtpSink(workdir=self.workdir) as relay:
                env = self.env(
                    "smtprelay",
                    database,
                    relay.port,
                    BENCH_PUBLISH="1",
                    BENCH_QUEUE=queue,
                    BENCH_READY_FILE=str(ready),
                )
                with celery_worker(env, queue, ready) as worker:
                    result = self.step(
                        "celery",
                        env,
                        "--n",
                        str(n),
                        "--counters",
                        str(relay.counter_file),
                        "--timeout",
                        str(max(60, n / 20)),
                    )
                    worker_rss = peak_rss_kb(worker.pid)
                tally = relay.tally(workload.recipients(n))
        finally:
            db.drop(database)
        self.check("celery", tally, n, result["delivered_in_db"])
        return {
            "enqueue_rate": n / result["enqueue_seconds"],
            "drain_rate": n / result["drain_seconds"],
            "e2e_rate": n / result["seconds"],
            "sessions": tally.sessions,
            "enqueue_rss_kb": result["maxrss_kb"],
            "drain_rss_kb": worker_rss,
        }

    def one_round(self, db: Any, n: int) -> dict[str, dict[str, Any]]:
        results = {"baseline": self.baseline(db, n)}
        results["smtprelay"] = self.queue_then_drain(db, "smtprelay", n)
        results["celery"] = self.celery(db, n)
        for subject in self.others:
            results[subject] = self.queue_then_drain(db, subject, n)
        if self.args.enqueue_turns:
            # The bulk enqueue's rate from queues taking turns; e2e_rate keeps
            # the enqueue timed above, before its own drain.
            turns = self.enqueue_turns(db, ["smtprelay", *self.others], n, self.args.enqueue_turns)
            for subject, rate in turns.items():
                results[subject]["enqueue_rate"] = rate
        if self.args.one_n:
            rates = self.send_one(db, ["smtprelay", *self.others], self.args.one_n)
            for subject, rate in rates.items():
                results[subject]["send_one_rate"] = rate
            database = db.fresh("smtprelay")
            try:
                floor = self.step(
                    "commit-floor", self.env("smtprelay", database), "--n", str(self.args.one_n)
                )
            finally:
                db.drop(database)
            results["baseline"]["send_one_rate"] = self.args.one_n / floor["seconds"]
        return results

    def webhooks(self, db: Any, n: int) -> dict[str, Any]:
        """ESP events posted to a route's webhook URL (bench/webhooks.py); on SQLite
        a second time with ``synchronous=NORMAL`` (a commit waits for no fsync)."""
        figures = self.webhook_pass(db, n)
        if db.label == "SQLite":
            relaxed = self.webhook_pass(db, n, BENCH_SQLITE_SYNCHRONOUS="NORMAL")
            figures["normal"] = {
                k: relaxed[k] for k in ("rate", "cpu_rate", "concurrent_rate", "batched_rate")
            }
        return figures

    def webhook_pass(self, db: Any, n: int, **extra: str) -> dict[str, Any]:
        database = db.fresh("smtprelay")
        try:
            # Persistent connections, as a site serving webhooks runs (Django's
            # advice for production): the concurrent pass's threads keep theirs.
            env = self.env("smtprelay", database, BENCH_CONN_MAX_AGE="60", **extra)
            result = self.step("webhooks", env, "--n", str(n))
        finally:
            db.drop(database)
        problems = []
        if result["events"] != n or result["events_after_replay"] != n:
            problems.append(
                f"{result['events']} events recorded, {result['events_after_replay']} after "
                f"posting all {n} again (expected {n} both times)"
            )
        if result["failed"] != result["expected_failed"]:
            problems.append(
                f"{result['failed']} bounced recipients failed of {result['expected_failed']}"
            )
        if result["concurrent_events"] != n:
            problems.append(f"{result['concurrent_events']} of {n} concurrent events recorded")
        if result["concurrent_failed"] != result["concurrent_expected_failed"]:
            problems.append(
                f"{result['concurrent_failed']} of {result['concurrent_expected_failed']} "
                "bounced recipients failed in the concurrent pass"
            )
        if result["batched_events"] != n:
            problems.append(f"{result['batched_events']} of {n} batched events recorded")
        if result["batched_failed"] != result["batched_expected_failed"]:
            problems.append(
                f"{result['batched_failed']} of {result['batched_expected_failed']} "
                "bounced recipients failed in the batched pass"
            )
        if problems:
            self.exact_failures.append("webhooks: " + "; ".join(problems))
            print("  !! webhooks: " + "; ".join(problems), file=sys.stderr)
        return {
            "n": n,
            "rate": n / result["seconds"],
            "cpu_rate": n / result["cpu_seconds"],
            "baseline_rate": n / result["baseline_seconds"],
            "baseline_cpu_rate": n / result["baseline_cpu_seconds"],
            "replay_rate": n / result["replay_seconds"],
            "clients": result["clients"],
            "concurrent_rate": n / result["concurrent_seconds"],
            "concurrent_cpu_rate": n / result["concurrent_cpu_seconds"],
            "concurrent_baseline_rate": n / result["concurrent_baseline_seconds"],
            "concurrent_baseline_cpu_rate": n / result["concurrent_baseline_cpu_seconds"],
            "batched_rate": n / result["batched_seconds"],
            "batched_cpu_rate": n / result["batched_cpu_seconds"],
        }

    def memory(self, db: Any, sizes: tuple[int, ...]) -> dict[int, int]:
        peaks = {}
        for n in sizes:
            database = db.fresh("smtprelay")
            try:
                with sink.SmtpSink(workdir=self.workdir) as relay:
                    env = self.env("smtprelay", database, relay.port)
                    self.step("enqueue", env, "--n", str(n))
                    drained = self.step("drain", env, "--n", str(n))
                    tally = relay.tally(workload.recipients(n))
            finally:
                db.drop(database)
            self.check(f"memory n={n}", tally, n, drained["delivered_in_db"])
            peaks[n] = drained["maxrss_kb"]
            print(f"  drain of {n:,}: peak {peaks[n] / 1024:.1f} MB", file=sys.stderr)
        return peaks

    def large(self, db: Any, n: int, mb: float) -> dict[str, Any]:
        """Peak memory of draining ``n`` messages of ``mb`` MB each."""
        database = db.fresh("smtprelay")
        try:
            with sink.SmtpSink(workdir=self.workdir) as relay:
                env = self.env("smtprelay", database, relay.port)
                queued = self.step("enqueue-large", env, "--n", str(n), "--mb", str(mb))
                drained = self.step("drain", env, "--n", str(n))
                tally = relay.tally(workload.recipients(n), settle=30)
        finally:
            db.drop(database)
        self.check(f"{db.label} large n={n}", tally, n, drained["delivered_in_db"])
        result = {
            "n": n,
            "message_bytes": queued["message_bytes"],
            "total_bytes": queued["total_bytes"],
            "drain_rss_kb": drained["maxrss_kb"],
            "seconds": drained["seconds"],
        }
        print(
            f"  {db.label}: drain of {n} x {result['message_bytes'] / 2**20:.1f} MB: peak "
            f"{result['drain_rss_kb'] / 1024:.0f} MB",
            file=sys.stderr,
        )
        return result

    def scale(self, db: Any, workers: int, n: int, delay: int) -> dict[int, float]:
        rates = {}
        for count in sorted({1, workers}):
            database = db.fresh("smtprelay")
            try:
                with sink.SmtpSink(workdir=self.workdir, delay=delay) as relay:
                    env = self.env(
                        "smtprelay",
                        database,
                        relay.port,
                        BENCH_BATCH_SIZE=str(self.args.scale_batch),
                    )
                    self.step("enqueue", env, "--n", str(n))
                    results = self.concurrent_drain(env, count)
                    in_db = self.step("count-delivered", env)["delivered_in_db"]
                    tally = relay.tally(workload.recipients(n))
            finally:
                db.drop(database)
            self.check(f"scale {count} worker(s)", tally, n, in_db)
            started = min(r["started"] for r in results)
            finished = max(r["finished"] for r in results)
            rates[count] = n / (finished - started)
            print(
                f"  {count} worker(s): {rates[count]:.2f} msg/s, sent per worker "
                f"{[r['report']['sent'] for r in results]}",
                file=sys.stderr,
            )
        return rates

    def concurrent_drain(self, env: dict[str, str], count: int) -> list[dict[str, Any]]:
        tag = uuid.uuid4().hex[:8]
        go = self.workdir / f"go-{tag}"
        readies = [self.workdir / f"ready-{tag}-{i}" for i in range(count)]
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bench.scenarios",
                    "scale-worker",
                    "--ready",
                    str(ready),
                    "--go",
                    str(go),
                ],
                env=env,
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for ready in readies
        ]
        deadline = time.monotonic() + 60
        while not all(r.exists() for r in readies):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                break
            time.sleep(0.01)
        go.touch()
        results = []
        for proc in procs:
            out, err = proc.communicate()
            results.append(parse_result("scale-worker", proc.returncode, out, err))
        return results


# -- helpers -----------------------------------------------------------------


def parse_result(name: str, code: int, stdout: str, stderr: str) -> dict[str, Any]:
    for line in reversed(stdout.splitlines()):
        if line.startswith("BENCH-RESULT "):
            return json.loads(line.removeprefix("BENCH-RESULT "))
    raise StepFailed(f"step {name!r} exited {code} without a result:\n{stderr[-3000:]}")


def default_broker(workdir: Path) -> str:
    """Redis on 127.0.0.1 when it answers; otherwise kombu's SQLAlchemy transport on a file."""
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            if s.recv(16).startswith(b"+PONG"):
                return "redis://127.0.0.1:6379/0"
    except OSError:
        pass
    return f"sqla+sqlite:///{workdir / 'broker.sqlite3'}"


@contextmanager
def celery_worker(
    env: dict[str, str], queue: str, ready: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """A real ``celery worker`` process (solo pool: one worker, one task at a time)."""
    log = open(ready.with_suffix(".log"), "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "bench.celery_app",
            "worker",
            "--pool=solo",
            "--queues",
            queue,
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel=WARNING",
            "--hostname",
            f"{queue}@%h",
        ],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=log,
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                raise StepFailed(
                    "celery worker did not start:\n" + ready.with_suffix(".log").read_text()[-3000:]
                )
            time.sleep(0.02)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def peak_rss_kb(pid: int) -> int | None:
    """A running process's peak resident memory (Linux ``VmHWM``)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def machine() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import sqlite3

    import django

    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "os": platform.platform(),
        "python": platform.python_version(),
        "django": django.get_version(),
        "sqlite": sqlite3.sqlite_version,
    }


def median_rounds(rounds: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Median of each figure, and of each rate's ratio to the same round's baseline."""
    summary: dict[str, dict[str, Any]] = {}
    for name in rounds[0]:
        row: dict[str, Any] = {}
        for key in rounds[0][name]:
            values = [r[name][key] for r in rounds if r[name].get(key) is not None]
            row[key] = statistics.median(values) if values else None
        for key in ("enqueue_rate", "drain_rate", "e2e_rate"):
            if key in rounds[0][name]:
                row[key.replace("rate", "ratio")] = statistics.median(
                    r[name][key] / r["baseline"]["drain_rate"] for r in rounds
                )
        summary[name] = row
    return summary


def median_esp_rounds(rounds: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Medians of the ESP rows; the route's ratio is to anymail's backend of the same round."""
    return {
        name: {
            key: statistics.median(r[name][key] for r in rounds)
            for key in rounds[0][name]
            if all(r[name].get(key) is not None for r in rounds)
        }
        for name in rounds[0]
    }


def pairwise(rounds: list[dict[str, dict[str, Any]]], a: str, b: str, key: str) -> float | None:
    """Median over rounds of ``a[key] / b[key]`` (both from the same round)."""
    if b not in rounds[0] or key not in rounds[0][a] or key not in rounds[0][b]:
        return None
    return statistics.median(r[a][key] / r[b][key] for r in rounds)


def run_submission(bench: Bench, db: Any, args: argparse.Namespace) -> dict[str, Any] | None:
    """The submission listener's throughput ratio and memory (bench/submission.py)."""
    if not submission.available():
        print(f"smtp-source not found at {submission.SMTP_SOURCE}; skipping", file=sys.stderr)
        return None
    rates = submission.throughput(
        bench,
        db,
        args.submission_n,
        args.submission_sessions,
        args.runs,
        args.submission_threads,
    )
    mem = submission.memory(bench, db, args.submission_connections, args.submission_threads)
    print(submission.table(db.label, rates, mem))
    return {"throughput": rates, "memory": mem}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5000, help="messages per run (default 5000)")
    parser.add_argument("--runs", type=int, default=3, help="runs; figures are medians")
    parser.add_argument("--sqlite", action="store_true", help="run on SQLite (the default)")
    parser.add_argument("--postgres", action="store_true", help="run on PostgreSQL too")
    parser.add_argument(
        "--skip-others", action="store_true", help="leave out django-post_office and django-mailer"
    )
    parser.add_argument(
        "--memory", action="store_true", help="peak memory draining 50,000 vs 5,000 (SQLite)"
    )
    parser.add_argument(
        "--scale-workers",
        type=int,
        default=0,
        metavar="W",
        help="W engine processes vs 1 against a slow relay (PostgreSQL)",
    )
    parser.add_argument(
        "--one-n",
        type=int,
        default=2000,
        help="send_mail() calls of one message each (0 leaves it out; default 2000)",
    )
    parser.add_argument(
        "--large",
        type=int,
        default=0,
        metavar="N",
        help="peak memory draining N messages of --large-mb MB each (attachments)",
    )
    parser.add_argument(
        "--enqueue-turns",
        type=int,
        default=4,
        metavar="T",
        help="bulk enqueue timed in T turns per queue, alternating (0: once, before the drain)",
    )
    parser.add_argument("--large-mb", type=float, default=10, help="MB per large message")
    parser.add_argument("--scale-n", type=int, default=40, help="messages in the scale test")
    parser.add_argument("--scale-delay", type=int, default=1, help="relay's DATA reply delay (s)")
    parser.add_argument("--scale-batch", type=int, default=2, help="claim size in the scale test")
    parser.add_argument(
        "--skip-esp", action="store_true", help="leave out the ESP route rows (SQLite)"
    )
    parser.add_argument(
        "--esp-delay", type=int, default=0, metavar="MS", help="the ESP API's latency (default 0)"
    )
    parser.add_argument(
        "--admin-scale",
        action="store_true",
        help="the admin's pages over a small and a large history (PostgreSQL)",
    )
    parser.add_argument(
        "--admin-sizes",
        default="10000,1000000",
        help="messages of the small and the large history (default 10000,1000000)",
    )
    parser.add_argument("--admin-repeat", type=int, default=5, help="requests per page a round")
    parser.add_argument("--admin-rounds", type=int, default=3, help="rounds over both sizes")
    parser.add_argument(
        "--webhook-n", type=int, default=2000, help="ESP events in the webhook step (0: skip)"
    )
    parser.add_argument(
        "--submission",
        action="store_true",
        help="smtprelay_serve vs a bare aiosmtpd server under smtp-source, and its memory",
    )
    parser.add_argument("--submission-n", type=int, default=10000, help="messages (10000)")
    parser.add_argument("--submission-sessions", type=int, default=10, help="sessions (10)")
    parser.add_argument(
        "--submission-connections", type=int, default=100, help="connections open (100)"
    )
    parser.add_argument("--submission-threads", type=int, default=4, help="listener threads (4)")
    parser.add_argument("--broker", help="Celery broker URL (default: local Redis, else SQLite)")
    parser.add_argument(
        "--dkim",
        type=int,
        default=0,
        metavar="N",
        help="drain N messages signed (RSA-2048) and unsigned; the cost of one signature",
    )
    parser.add_argument(
        "--destinations",
        action="store_true",
        help="simulate destination-aware routing (bench/destinations.py); table and chart "
        "go next to --json's file (else bench/results/)",
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target fails")
    parser.add_argument("--json", metavar="OUT", help="write every figure to this JSON file")
    args = parser.parse_args(argv)

    if not sink.available():
        parser.error(f"smtp-sink not found at {sink.SMTP_SINK}: apt-get install postfix")
    pg_ok = PostgreSQL.available()
    kinds = []
    # SQLite is the default, unless only PostgreSQL parts were asked for.
    if args.sqlite or not (args.postgres or args.admin_scale):
        kinds.append("sqlite")
    if args.postgres:
        if pg_ok:
            kinds.append("postgres")
        else:
            print("PostgreSQL is not reachable; skipping the PostgreSQL runs", file=sys.stderr)
    if args.scale_workers and not pg_ok:
        print("PostgreSQL is not reachable; skipping the scale test", file=sys.stderr)
    if args.admin_scale and not pg_ok:
        print("PostgreSQL is not reachable; skipping the admin at scale", file=sys.stderr)

    workdir = Path(tempfile.mkdtemp(prefix="smtprelay-bench-"))
    workdir.chmod(0o755)
    bench = Bench(args, workdir)
    output: dict[str, Any] = {
        "machine": machine(),
        "n": args.n,
        "runs": args.runs,
        "broker": bench.broker.split("://")[0],
        "databases": {},
    }
    targets: list[report.Target] = []
    side: dict[str, dict[str, Any]] = {}
    try:
        for kind in kinds:
            db = SQLite(workdir) if kind == "sqlite" else PostgreSQL(workdir)
            if kind == "postgres":
                output["machine"]["postgres"] = db.version()
            try:
                for subject in ["smtprelay", *bench.others]:
                    bench.step("migrate", bench.env(subject, db.create_template(subject)))
                rounds, esp_rounds = [], []
                for i in range(args.runs):
                    print(f"{db.label}: run {i + 1} of {args.runs} (N={args.n:,})", file=sys.stderr)
                    rounds.append(bench.one_round(db, args.n))
                    if kind == "sqlite" and not args.skip_esp:
                        esp_rounds.append(bench.esp(db, args.n))
                summary = median_rounds(rounds)
                output["databases"][kind] = {"rounds": rounds, "summary": summary}
                print(report.table(db.label, args.n, args.runs, summary, bench.broker))
                if esp_rounds:
                    esp_summary = median_esp_rounds(esp_rounds)
                    output["esp"] = {"rounds": esp_rounds, "summary": esp_summary}
                    print(report.esp_table(db.label, args.n, args.runs, esp_summary))
                    targets.append(report.esp_target(esp_summary))
                vs_po = {
                    key: pairwise(rounds, "smtprelay", "post_office", key)
                    for key in ("enqueue_rate", "send_one_rate", "e2e_rate")
                }
                output["databases"][kind]["vs_post_office"] = vs_po
                side[db.label] = {**summary, "vs_po": vs_po}
                targets += report.speed_targets(db.label, summary, vs_po)
                if args.webhook_n:
                    print(f"{db.label}: webhook events (N={args.webhook_n:,})", file=sys.stderr)
                    hooks = bench.webhooks(db, args.webhook_n)
                    output["databases"][kind]["webhooks"] = hooks
                    print(report.webhook_line(db.label, hooks))
                    if kind == "sqlite":
                        targets.append(report.webhook_target(hooks))
                if args.large:
                    print(f"{db.label}: {args.large} large messages", file=sys.stderr)
                    big = bench.large(db, args.large, args.large_mb)
                    output["databases"][kind]["large"] = big
                    side[db.label]["large"] = big
                    targets.append(report.large_target(db.label, big))
                if kind == "sqlite" and args.dkim:
                    print(f"{db.label}: DKIM signing (N={args.dkim:,})", file=sys.stderr)
                    signed = dkim.run(bench, db, args.dkim, args.runs)
                    output["dkim"] = signed
                    print(dkim.table(db.label, signed))
                    targets.append(dkim.target(signed))
                if args.submission:
                    output["databases"][kind]["submission"] = run_submission(bench, db, args)
                    figures = output["databases"][kind]["submission"]
                    if figures:
                        targets.append(submission.target(db.label, figures["throughput"]))
                    else:
                        targets.append(
                            report.Target("submission", "SKIP", "smtp-source is not installed")
                        )
                if kind == "sqlite" and args.memory:
                    print("SQLite: peak memory of one drain", file=sys.stderr)
                    peaks = bench.memory(db, (5000, 50000))
                    output["memory"] = peaks
                    targets.append(report.memory_target(peaks))
            finally:
                db.close()
        if args.scale_workers and pg_ok:
            db = PostgreSQL(workdir)
            try:
                bench.step("migrate", bench.env("smtprelay", db.create_template("smtprelay")))
                print(
                    f"PostgreSQL: scale, relay delay {args.scale_delay}s, N={args.scale_n}",
                    file=sys.stderr,
                )
                rates = bench.scale(db, args.scale_workers, args.scale_n, args.scale_delay)
            finally:
                db.close()
            output["scale"] = rates
            targets.append(report.scale_target(rates, args.scale_workers))
        if args.admin_scale and pg_ok:
            sizes = sorted(int(n) for n in args.admin_sizes.split(","))
            db = PostgreSQL(workdir)
            try:
                admin = admin_scale.run(bench, db, sizes, args.admin_repeat, args.admin_rounds)
            finally:
                db.close()
            output["admin_scale"] = admin
            print(admin_scale.table(admin))
            targets.append(admin_scale.target(admin))
        elif args.admin_scale:
            targets.append(admin_scale.skipped("PostgreSQL is not reachable on 127.0.0.1:5432"))
        if args.destinations:
            print("Destination-aware routing: simulation", file=sys.stderr)
            results = Path(args.json).parent if args.json else ROOT / "bench" / "results"
            command = [sys.executable, "-m", "bench.destinations", "--out", str(results)]
            env = bench.env("smtprelay", "")
            proc = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
            dest = parse_result("destinations", proc.returncode, proc.stdout, proc.stderr)
            output["destinations"] = dest
            print((results / "destinations.md").read_text())
            targets += [report.Target(t["name"], t["status"], t["detail"]) for t in dest["targets"]]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    targets.append(report.exact_target(bench.exact_failures))
    output["targets"] = [t.__dict__ for t in targets]
    output["exact_failures"] = bench.exact_failures
    if side:
        print(report.side_by_side(side))
    print(report.machine_line(output["machine"]))
    print(report.targets(targets))
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(output, indent=2, default=str))
    if bench.exact_failures:
        return 1
    if args.strict and any(t.status == "FAIL" for t in targets):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
