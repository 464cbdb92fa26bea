"""The example site: its settings load, its checks pass, it migrates, and its relays behave.

The site runs in subprocesses, with its own settings and a temporary ``var/``
folder, so nothing here touches this suite's Django setup or the example's
real database.
"""

from __future__ import annotations

import importlib.util
import json
import os
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


def run_example(var_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
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
        timeout=90,
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
    assert loaded["tasks"] == ["django_smtprelay.deliver", "django_smtprelay.sweep"]
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
