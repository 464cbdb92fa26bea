"""A submission listener for tests: in this process on a thread of its own
(its database threads share the test database), or as ``smtprelay_serve``
in a subprocess; and the clients' side."""

from __future__ import annotations

import asyncio
import json
import os
import re
import smtplib
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from django_smtprelay.models import SubmissionAccount
from django_smtprelay.submission.server import Listener
from django_smtprelay.submission.settings import ListenAddress, parse_listen

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery staple"


class ListenerThread:
    """A :class:`Listener` on port 0 (STARTTLS and implicit TLS), run on its own loop."""

    def __init__(self, addresses: list[ListenAddress], threads: int = 4) -> None:
        self.addresses = addresses
        self.threads = threads
        self.bound: list[ListenAddress] = []
        self.listener: Listener | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        if not self._started.wait(10):
            raise RuntimeError("the listener did not start in 10 s")
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.listener = Listener(self.addresses, self.threads)
            self.bound = self.loop.run_until_complete(self.listener.start())
        except BaseException as exc:  # reported to the test
            self._error = exc
            self._started.set()
            return
        self._started.set()
        self.loop.run_forever()

    def port(self, mode: str = "starttls") -> int:
        return next(a.port for a in self.bound if a.mode == mode)

    def stop(self, grace: float = 5.0) -> None:
        if self.listener is not None and self.loop.is_running():
            future = asyncio.run_coroutine_threadsafe(self.listener.stop(grace), self.loop)
            future.result(grace + 15)
            self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def make_account(**fields: Any) -> SubmissionAccount:
    values = {
        "name": "cron",
        "username": "cron",
        "allowed_senders": "cron@example.com\nexample.org",
    }
    values.update(fields)
    password = values.pop("password", PASSWORD)
    account = SubmissionAccount(**values)
    account.set_password(password)
    account.save()
    return account


def client(port: int, ca_file: Path, *, starttls: bool = True, timeout: float = 10) -> smtplib.SMTP:
    """An smtplib client that verifies the listener's certificate (test CA)."""
    context = ssl.create_default_context(cafile=str(ca_file))
    smtp = smtplib.SMTP("127.0.0.1", port, timeout=timeout)
    smtp.ehlo("client.example")
    if starttls:
        smtp.starttls(context=context)
        smtp.ehlo("client.example")
    return smtp


def message(subject: str = "Nightly backup", sender: str = "cron@example.com") -> bytes:
    return (
        f"From: Cron <{sender}>\r\nTo: ops@example.net\r\nSubject: {subject}\r\n"
        "Message-ID: <backup-1@example.com>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        "Backup finished: 42 files, na\u00efve caf\u00e9.\r\n"
        ".A line that starts with a dot\r\n"
    ).encode()


def strip_received(raw: bytes) -> tuple[bytes, bytes]:
    """(the Received header the listener added, the rest as the client sent it)."""
    match = re.match(rb"Received: [^\r]*(?:\r\n\t[^\r]*)*\r\n", raw)
    assert match, raw[:200]
    return match.group(0), raw[match.end() :]


class ServeProcess:
    """``manage.py smtprelay_serve`` in a subprocess (the test settings, and
    ``SMTPRELAY`` keys given as JSON)."""

    def __init__(self, listen: list[str], env: dict[str, str], smtprelay: dict[str, Any]) -> None:
        full_env = {
            **os.environ,
            **env,
            "DJANGO_SETTINGS_MODULE": "tests.submission.serve_settings",
            "SMTPRELAY_TEST_SUBMISSION": json.dumps(smtprelay),
            "PYTHONPATH": str(ROOT),
        }
        argv = [sys.executable, "-m", "django", "smtprelay_serve"]
        for address in listen:
            argv += ["--listen", address]
        self.process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.bound: dict[str, int] = {}
        deadline = time.monotonic() + 30
        assert self.process.stdout is not None
        while time.monotonic() < deadline and len(self.bound) < len(listen):
            line = self.process.stdout.readline()
            if not line:
                raise RuntimeError(f"smtprelay_serve exited: {self.process.stderr.read()}")
            found = re.match(r"Listening on (\w+)://.*:(\d+)$", line.strip())
            if found:
                self.bound[found.group(1)] = int(found.group(2))

    def finish(self, timeout: float = 30) -> tuple[int, str, str]:
        out, err = self.process.communicate(timeout=timeout)
        return self.process.returncode, out, err

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


@pytest.fixture
def serve_process() -> Iterator[Any]:
    started: list[ServeProcess] = []

    def start(listen: list[str], env: dict[str, str] | None = None, **smtprelay: Any):
        process = ServeProcess(listen, env or {}, smtprelay)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


def addresses() -> list[ListenAddress]:
    return [parse_listen("starttls://127.0.0.1:0"), parse_listen("tls://127.0.0.1:0")]
