"""The fault suite's parts: worker processes, the relay's log, bounded waits, the figures.

Every worker is a real process (``tests.faults.worker``) on the test's
PostgreSQL database, delivering to a loopback relay (``tests.smtpserver``)
that lives in the test process and records each message it accepted. The
relay's log, counted per Message-ID, is the ground truth the database is
compared with.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.core.mail import EmailMessage, get_connection
from django.db import connection

from django_smtprelay.models import Message, Route
from tests.fixtures import services_required
from tests.smtpserver import SMTPTestServer

ROOT = Path(__file__).resolve().parents[2]
ENABLE = (
    "set SMTPRELAY_TEST_DATABASE=postgres (PostgreSQL on PGHOST/PGPORT, default "
    "127.0.0.1:5432, database PGDATABASE=test) to run the fault suite"
)


def require_postgresql() -> None:
    """Skip unless the suite runs on PostgreSQL; fail in CI when it is unreachable."""
    if os.environ.get("SMTPRELAY_TEST_DATABASE") != "postgres":
        pytest.skip(f"the fault suite needs PostgreSQL (SKIP LOCKED, many processes): {ENABLE}")
    where = {
        "host": os.environ.get("PGHOST", "127.0.0.1"),
        "port": os.environ.get("PGPORT", "5432"),
        "user": os.environ.get("PGUSER", "postgres"),
        "dbname": os.environ.get("PGDATABASE", "test"),
    }
    try:
        psycopg.connect(connect_timeout=3, **where).close()
    except psycopg.Error as exc:
        message = f"PostgreSQL is not reachable at {where}: {exc}"
        if services_required():
            pytest.fail(f"SMTPRELAY_TEST_REQUIRE_SERVICES=1 but {message}")
        pytest.skip(f"{message}; {ENABLE}")


def on_test_database() -> bool:
    settings = connection.settings_dict
    return settings["NAME"] == settings["TEST"]["NAME"]


def assert_test_database() -> None:
    """Guard for fixtures that reach the database outside pytest-django's own setup."""
    settings = connection.settings_dict
    assert on_test_database(), (
        f"connected to {settings['NAME']!r}, not the test database {settings['TEST']['NAME']!r}"
    )


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``condition`` until it is truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


class Worker:
    """One ``smtprelay_send`` process; its output goes to files, never a pipe that can fill."""

    def __init__(self, name: str, proc: subprocess.Popen[bytes], out: Path, err: Path) -> None:
        self.name, self.proc, self.out, self.err = name, proc, out, err

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no cleanup of any kind runs in the worker."""
        if self.alive:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def finish(self, timeout: float) -> dict[str, Any]:
        """Wait (bounded) for the worker to exit; its JSON result and exit code."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"worker {self.name} still running after {timeout}s: {self.stderr()}")
        lines = self.out.read_text().strip().splitlines()
        result = json.loads(lines[-1]) if lines else {}
        result["returncode"] = code
        return result

    def stderr(self) -> str:
        return self.err.read_text()[-3000:]

    def claimed(self, result: dict[str, Any]) -> int:
        """The number of messages the summary says it claimed."""
        summary = result.get("summary", "")
        assert summary.startswith("claimed "), f"worker {self.name}: {result} {self.stderr()}"
        return int(summary.split(",")[0].split()[1])


class Workers:
    """Starts worker processes on the test database; ``stop_all`` kills what is left."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: list[Worker] = []

    def start(self, *, application_name: str | None = None, **relay: Any) -> Worker:
        """A worker with ``SMTPRELAY`` keys ``relay`` and the given connection application_name."""
        assert_test_database()
        name = application_name or f"smtprelay-fault-{uuid.uuid4().hex[:12]}"
        db = {
            key: connection.settings_dict[key]
            for key in ("ENGINE", "NAME", "HOST", "PORT", "USER", "PASSWORD")
        }
        db["OPTIONS"] = {"application_name": name}
        env = {
            **os.environ,
            "SMTPRELAY_FAULT_WORKER_DB": json.dumps(db),
            "SMTPRELAY_FAULT_WORKER_RELAY": json.dumps(relay),
            "PYTHONPATH": str(ROOT),
        }
        out, err = self.logs / f"{name}.out", self.logs / f"{name}.err"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tests.faults.worker"],
                cwd=ROOT,
                env=env,
                stdout=stdout,
                stderr=stderr,
            )
        worker = Worker(name, proc, out, err)
        self.started.append(worker)
        return worker

    def stop_all(self) -> None:
        for worker in self.started:
            if worker.alive:
                worker.kill()


def add_route(server: SMTPTestServer, **fields: Any) -> Route:
    values: dict[str, Any] = {
        "name": "fault-relay",
        "host": "127.0.0.1",
        "port": server.port,
        "security": Route.Security.NONE,
        "priority": 10,
        "timeout": 10.0,
    }
    values.update(fields)
    return Route.objects.create(**values)


def queue(count: int, tag: str) -> dict[str, int]:
    """Queue ``count`` one-recipient messages through the queued backend; Message-ID -> pk."""
    backend = get_connection("django_smtprelay.backends.QueuedEmailBackend")
    for start in range(0, count, 500):
        backend.send_messages(
            [
                EmailMessage(f"{tag} {i}", "body", "from@example.com", [f"to{i}@example.com"])
                for i in range(start, min(start + 500, count))
            ]
        )
    by_id = dict(Message.objects.values_list("message_id", "pk"))
    assert len(by_id) == count, f"expected {count} distinct Message-IDs, got {len(by_id)}"
    return by_id


def delivered(server: SMTPTestServer) -> Counter[str]:
    """How many times the relay accepted each Message-ID (its own log, not the database)."""
    parser = BytesHeaderParser()
    return Counter(str(parser.parsebytes(m.data)["Message-ID"]).strip() for m in server.messages)


def settled(relay: SMTPTestServer) -> Counter[str]:
    """The relay's log once the worker's connections are gone: a reply held back by the
    relay when the worker died would otherwise be logged after it was read."""
    wait_until(lambda: relay.open_connections == 0, 10, "the relay to see the worker go")
    return delivered(relay)


def sent_ids() -> set[str]:
    sent = Message.objects.filter(status=Message.Status.SENT)
    return set(sent.values_list("message_id", flat=True))


def statuses() -> Counter[str]:
    return Counter(Message.objects.values_list("status", flat=True))


def leases_expired() -> bool:
    """No message is held under a lease that has not run out yet (by the database's clock)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM django_smtprelay_message"
            " WHERE status = 'sending' AND lease_expires_at >= now()"
        )
        return cursor.fetchone()[0] == 0


def reliability(name: str, **figures: object) -> None:
    """The figure line the README's table is taken from (``pytest -s tests/faults``)."""
    print(f"\nRELIABILITY: {name} " + " ".join(f"{k}={v}" for k, v in figures.items()))


def only(ids: Iterable[str]) -> list[str]:
    return sorted(ids)[:10]
