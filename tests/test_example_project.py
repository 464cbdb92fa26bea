"""The example site: its settings load, its checks pass, it migrates, its relays behave,
and ``make demo`` tells the story it promises, the same on every run.

The site runs in subprocesses, with its own settings and a temporary ``var/``
folder, so nothing here touches this suite's Django setup or the example's
real database.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import smtplib
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "example_project"


def run_example(var_dir: Path, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """Run ``python ARGS`` in the example folder with the example's settings."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "example_project.settings",
        "EXAMPLE_VAR_DIR": str(var_dir),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    return subprocess.run(
        [sys.executable, *args],
        cwd=EXAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


SETTINGS_PROBE = """
import json
import django
django.setup()
from django.conf import settings
from example_project import celery_app
celery_app.loader.import_default_modules()
print(json.dumps({
    "email_backend": settings.EMAIL_BACKEND,
    "database": str(settings.DATABASES["default"]["NAME"]),
    "broker": celery_app.conf.broker_url,
    "beat": celery_app.conf.beat_schedule,
    "tasks": sorted(t for t in celery_app.tasks if t.startswith("django_smtprelay.")),
    "smtprelay": settings.SMTPRELAY,
}))
"""


def test_settings_configure_the_queue_and_an_embedded_broker(tmp_path: Path) -> None:
    loaded = json.loads(ok(run_example(tmp_path, "-c", SETTINGS_PROBE)))

    assert loaded["email_backend"] == "django_smtprelay.backends.QueuedEmailBackend"
    assert Path(loaded["database"]).parent == tmp_path
    assert loaded["broker"] == f"sqla+sqlite:///{tmp_path / 'broker.sqlite3'}"
    assert loaded["beat"]["smtprelay-sweep"] == {
        "task": "django_smtprelay.sweep",
        "schedule": 60.0,
    }
    assert loaded["beat"]["smtprelay-purge"] == {
        "task": "django_smtprelay.purge",
        "schedule": 3600.0,
    }
    assert loaded["tasks"] == [
        "django_smtprelay.deliver",
        "django_smtprelay.purge",
        "django_smtprelay.sweep",
    ]
    assert loaded["smtprelay"]["USE_DJANGO_EMAIL_SETTINGS"] is False


def test_system_checks_pass(tmp_path: Path) -> None:
    result = run_example(tmp_path, "manage.py", "check", "--fail-level", "WARNING")
    ok(result)
    assert "System check identified" in result.stdout + result.stderr


def test_migrate_creates_the_queue_tables_and_models_match_migrations(tmp_path: Path) -> None:
    ok(run_example(tmp_path, "manage.py", "migrate", "--noinput"))

    with sqlite3.connect(tmp_path / "db.sqlite3") as db:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
    assert {
        "django_smtprelay_message",
        "django_smtprelay_recipient",
        "django_smtprelay_deliveryattempt",
        "django_smtprelay_route",
        "auth_user",
    } <= tables
    ok(run_example(tmp_path, "manage.py", "makemigrations", "--check", "--dry-run"))


@pytest.fixture(scope="module")
def local_relays() -> Iterator[ModuleType]:
    pytest.importorskip("aiosmtpd")
    spec = importlib.util.spec_from_file_location("local_relays", EXAMPLE / "local_relays.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def test_recording_relay_stores_mail_and_refuses_unknown_users(
    local_relays: ModuleType, tmp_path: Path
) -> None:
    relay = local_relays.RecordingRelay(tmp_path / "mailbox")
    port = relay.start()
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            refused = client.sendmail(
                "sender@example.com",
                ["alice@example.com", "nobody@example.com"],
                b"Message-ID: <one@example.com>\r\nSubject: hi\r\n\r\nbody\r\n",
            )
    finally:
        relay.stop()

    code, text = refused["nobody@example.com"]
    assert code == 550 and text.startswith(b"5.1.1 ")
    received = relay.find("<one@example.com>")
    assert received is not None
    assert received.recipients == ("alice@example.com",)
    assert b"Subject: hi" in received.path.read_bytes()


def test_refusing_relay_refuses_connections(local_relays: ModuleType) -> None:
    relay = local_relays.RefusingRelay()
    port = relay.start()
    try:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5)
    finally:
        relay.stop()


# What the demo promises (example_project/story.py), read back from its database
# rather than taken from its own verdict: subject -> (message state,
# {recipient: (state, enhanced code)}); every message fails over first.
PROMISED_STORY = {
    "Plain text: hello": ("sent", {"alice@example.com": ("delivered", "")}),
    "HTML with an attachment": (
        "sent",
        {"bob@example.com": ("delivered", ""), "carol@example.com": ("delivered", "")},
    ),
    "One good recipient, one unknown": (
        "sent",
        {"dave@example.com": ("delivered", ""), "nobody@example.com": ("failed", "5.1.1")},
    ),
    "Only an unknown recipient": ("failed", {"nobody@example.org": ("failed", "5.1.1")}),
    # Submitted over SMTP (STARTTLS and AUTH) to the demo's smtprelay_serve.
    "Submitted over SMTP: nightly backup": ("sent", {"erin@example.com": ("delivered", "")}),
}


def demo_story(db_path: Path) -> dict[str, tuple[str, list[tuple[str, str]], dict]]:
    """Each message's state, its attempts in order (route, outcome), and its recipients."""
    with sqlite3.connect(db_path) as db:
        story = {}
        for pk, subject, status in db.execute(
            "SELECT id, subject, status FROM django_smtprelay_message ORDER BY id"
        ):
            attempts = db.execute(
                "SELECT route_name, outcome FROM django_smtprelay_deliveryattempt "
                "WHERE message_id = ? ORDER BY started_at, id",
                (pk,),
            ).fetchall()
            recipients = db.execute(
                "SELECT r.address, r.status, r.enhanced_code, rt.name "
                "FROM django_smtprelay_recipient r "
                "LEFT JOIN django_smtprelay_route rt ON rt.id = r.route_id WHERE r.message_id = ?",
                (pk,),
            ).fetchall()
            story[subject] = (
                status,
                attempts,
                {address: (state, code, route) for address, state, code, route in recipients},
            )
    return story


def assert_promised_story(db_path: Path) -> None:
    story = demo_story(db_path)
    assert list(story) == list(PROMISED_STORY)
    for subject, (status, recipients) in PROMISED_STORY.items():
        got_status, attempts, got_recipients = story[subject]
        assert got_status == status, (subject, story[subject])
        # Failover shown: the first route refuses, the second one answers.
        assert attempts[0] == ("relay-down", "route_fault"), (subject, attempts)
        assert attempts[1][0] == "relay-up", (subject, attempts)
        for address, (state, code) in recipients.items():
            got_state, got_code, route = got_recipients[address]
            assert (got_state, route) == (state, "relay-up"), (subject, address, got_recipients)
            assert got_code == code or not code, (subject, address, got_recipients)


LEFTOVERS = """
from datetime import timedelta
from django.utils import timezone
from django_smtprelay.models import Route, RouteHealth, Suppression
now = timezone.now()
RouteHealth.objects.update_or_create(
    route_name="relay-down",
    defaults={"state": "open", "opened_at": now, "open_until": now + timedelta(days=1)},
)
Suppression.objects.create(address="alice@example.com", reason="left over")
Route.objects.create(name="my-relay", host="127.0.0.1", port=9, priority=1)
Route.objects.filter(name="relay-up").update(recipient_domains="example.net")
"""


def seed_leftovers(var_dir: Path) -> None:
    """What would change the story: an open circuit, a suppressed address, a route of
    one's own tried first, a demo route edited in the admin."""
    ok(run_example(var_dir, "manage.py", "shell", "-c", LEFTOVERS))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_demo_tells_the_promised_story_on_every_run(tmp_path: Path) -> None:
    pytest.importorskip("aiosmtpd")
    # The web port is taken: --no-serve must not need it.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        outputs = []
        for run in (1, 2):
            result = run_example(tmp_path, "demo.py", "--no-serve", "--port", port, timeout=120)
            output = ok(result)
            assert "As promised: every message failed over from relay-down to relay-up" in output
            assert_promised_story(tmp_path / "db.sqlite3")
            assert len(list((tmp_path / "mailbox").glob("*.eml"))) == 4, f"run {run}"
            with sqlite3.connect(tmp_path / "db.sqlite3") as db:
                counted = db.execute(
                    "SELECT status, SUM(count) FROM django_smtprelay_messagestat GROUP BY status"
                ).fetchall()
            assert dict(counted) == {"sent": 4, "failed": 1}, f"run {run}: the reset drops stats"
            with sqlite3.connect(tmp_path / "db.sqlite3") as db:
                (account,) = db.execute(
                    "SELECT a.username FROM django_smtprelay_message m JOIN "
                    "django_smtprelay_submissionaccount a ON a.id = m.submission_account_id"
                ).fetchone()
            assert account == "demo-cron"
            outputs.append(output)
            if run == 1:
                seed_leftovers(tmp_path)

    assert "deleted 0 messages, 0 suppressions and 0 mailbox files" in outputs[0]
    assert "deleted 5 messages, 3 suppressions and 4 mailbox files" in outputs[1]
    assert "disabled the other routes (my-relay)" in outputs[1]
    reports = [
        out[out.index("Where each message went") : out.index("Admin login")] for out in outputs
    ]
    assert normalized(reports[0]) == normalized(reports[1])


def normalized(report: str) -> str:
    """A demo report without what differs on every run: the relay's queue ids."""
    return re.sub(r"\b[0-9A-F]{10}\b", "QUEUE-ID", report)
