"""Run the example site with everything it needs, on 127.0.0.1 only, until Ctrl-C.

Migrates the database, (re)sets the ``admin`` login, starts two local relays
(``relay-down`` refuses every connection, ``relay-up`` accepts), points the
routes at them, starts a Celery worker with beat, queues a few messages,
waits until each is final and prints where it went, then serves the site.

Run it from this folder: ``python demo.py [--port 8000]``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import IO, Any

HERE = Path(__file__).resolve().parent
HOST = "127.0.0.1"
ADMIN_USERNAME = "admin"
UNKNOWN_USER = "nobody"


class Child:
    """A child process in a session of its own, so stopping it stops all it started."""

    def __init__(self, name: str, argv: Sequence[str], log: Path | None = None) -> None:
        self.name = name
        self.log = log
        output: IO[bytes] | None = None
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
            output = log.open("ab")
        try:
            self.process = subprocess.Popen(
                list(argv),
                cwd=HERE,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT if output else None,
                start_new_session=True,
            )
        finally:
            if output is not None:
                output.close()

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the child's process group, wait, then SIGKILL whatever is left of it."""
        pgid = self.process.pid
        if self.running():
            _signal_group(pgid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                print(f"  {self.name} did not stop in {timeout:.0f} s; killing it")
        _signal_group(pgid, signal.SIGKILL)  # stragglers such as the embedded beat
        self.process.wait()

    def tail(self, lines: int = 20) -> str:
        if self.log is None or not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def setup_django() -> None:
    # Forced, not defaulted: a DJANGO_SETTINGS_MODULE left in the shell must not
    # point the demo (and its children, which inherit it) at another site.
    os.environ["DJANGO_SETTINGS_MODULE"] = "example_project.settings"
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    import django

    django.setup()


def reset_admin_password() -> str:
    """Create the ``admin`` superuser, or give it a new random password; return the password."""
    from django.contrib.auth import get_user_model

    password = secrets.token_urlsafe(12)
    user, _ = get_user_model().objects.get_or_create(
        username=ADMIN_USERNAME, defaults={"email": "admin@example.com"}
    )
    user.is_staff = user.is_superuser = user.is_active = True
    user.set_password(password)
    user.save()
    return password


def point_routes(down_port: int, up_port: int) -> None:
    """Create or update the two demo routes: relay-down first, relay-up as the failover."""
    from django_smtprelay.models import Route

    common: dict[str, Any] = {
        "host": HOST,
        "security": Route.Security.NONE,
        "verify_certificate": True,
        "username": "",
        "timeout": 5.0,
        "enabled": True,
    }
    Route.objects.update_or_create(
        name="relay-down", defaults={**common, "port": down_port, "priority": 10}
    )
    Route.objects.update_or_create(
        name="relay-up", defaults={**common, "port": up_port, "priority": 20}
    )


def prepare_broker() -> None:
    """Create the broker's tables now, so the worker and this process never race to."""
    from example_project.celery import app

    with app.connection_for_write() as conn:
        conn.default_channel.queue_declare(queue=app.conf.task_default_queue)


def queue_demo_messages() -> list[int]:
    """Queue a handful of messages through Django's mail API; return their ids."""
    from django.core.mail import EmailMessage, EmailMultiAlternatives, send_mail
    from django.db import transaction

    from django_smtprelay.models import Message

    start = Message.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    with transaction.atomic():
        send_mail(
            "Plain text: hello",
            "Hello Alice, this is a plain text message.",
            None,
            ["alice@example.com"],
        )
        html = EmailMultiAlternatives(
            "HTML with an attachment",
            "Hi Bob, the report is attached.",
            to=["bob@example.com"],
            cc=["carol@example.com"],
        )
        html.attach_alternative("<p>Hi Bob, the <b>report</b> is attached.</p>", "text/html")
        html.attach("report.csv", "month,sent\njanuary,42\n", "text/csv")
        html.send()
        EmailMessage(
            "One good recipient, one unknown",
            "Dave gets this; the relay refuses the other address with 550 5.1.1.",
            to=["dave@example.com", f"{UNKNOWN_USER}@example.com"],
        ).send()
        EmailMessage(
            "Only an unknown recipient",
            "Nobody gets this: every recipient is refused, so the message fails.",
            to=[f"{UNKNOWN_USER}@example.org"],
        ).send()
    return list(Message.objects.filter(pk__gt=start).order_by("pk").values_list("pk", flat=True))


def wait_until_final(ids: list[int], worker: Child, timeout: float) -> bool:
    """Wait until every message is sent, failed or cancelled; False on timeout."""
    from django_smtprelay.models import Message

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not worker.running():
            raise RuntimeError(
                f"The Celery worker exited with code {worker.process.returncode}; "
                f"the end of {worker.log}:\n{worker.tail()}"
            )
        pending = Message.objects.filter(pk__in=ids).exclude(status__in=Message.FINAL_STATES)
        if not pending.exists():
            return True
        time.sleep(0.5)
    return False


def report(ids: list[int], relay: Any) -> None:
    """Print, for each message, every attempt and each recipient's fate."""
    from django_smtprelay.models import Message

    messages = (
        Message.objects.filter(pk__in=ids)
        .order_by("pk")
        .prefetch_related("recipients__route", "attempts")
    )
    for message in messages:
        print(f"\n  #{message.pk} {message.subject!r}: {message.get_status_display().upper()}")
        for attempt in sorted(message.attempts.all(), key=lambda a: (a.started_at, a.pk)):
            code = " ".join(str(x) for x in (attempt.smtp_code, attempt.enhanced_code) if x)
            reply = " ".join(x for x in (code, attempt.reply) if x)
            print(f"    tried {attempt.route_name:<10} {attempt.get_outcome_display()}: {reply}")
        for rcpt in message.recipients.all():
            route = rcpt.route.name if rcpt.route else "-"
            detail = rcpt.reply or (f"{rcpt.smtp_code}" if rcpt.smtp_code else "")
            print(f"    {rcpt.address:<24} {rcpt.get_status_display():<9} via {route}  {detail}")
        received = relay.find(message.message_id)
        if received is not None:
            print(f"    relay-up stored it as {os.path.relpath(received.path, HERE)}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000, help="web server port (8000)")
    parser.add_argument(
        "--wait", type=float, default=60.0, help="seconds to wait for delivery (60)"
    )
    parser.add_argument(
        "--no-serve", action="store_true", help="exit after the report instead of serving"
    )
    args = parser.parse_args(argv)

    if not args.no_serve and not port_is_free(args.port):
        print(f"Port {HOST}:{args.port} is in use; stop what uses it or pass --port.")
        return 1
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGHUP, _raise_interrupt)

    setup_django()
    from django.conf import settings
    from django.core.management import call_command
    from local_relays import RecordingRelay, RefusingRelay

    var = Path(settings.VAR_DIR)
    children: list[Child] = []
    down, up = RefusingRelay(), RecordingRelay(var / "mailbox")
    try:
        print(f"Database: {settings.DATABASES['default']['NAME']}")
        call_command("migrate", interactive=False, verbosity=0)
        password = reset_admin_password()

        down_port, up_port = down.start(), up.start()
        point_routes(down_port, up_port)
        print(f"relay-down: {HOST}:{down_port}  refuses every connection (priority 10)")
        print(
            f"relay-up:   {HOST}:{up_port}  accepts, stores mail in {up.mailbox}, "
            f"refuses {UNKNOWN_USER}@ with 550 5.1.1 (priority 20)"
        )

        prepare_broker()
        worker = Child(
            "celery worker",
            [sys.executable, "-m", "celery", "-A", "example_project", "worker", "-B",
             "--pool=solo", "--loglevel=INFO", "--without-mingle", "--without-gossip"],
            log=var / "log" / "worker.log",
        )  # fmt: skip
        children.append(worker)
        print(f"Celery worker with beat: pid {worker.process.pid}, log {worker.log}")

        ids = queue_demo_messages()
        print(f"Queued {len(ids)} messages; waiting for delivery ...")
        if not wait_until_final(ids, worker, args.wait):
            print(f"Not all messages were final after {args.wait:.0f} s; see {worker.log}.")
        report(ids, up)

        print(f"\nAdmin login: {ADMIN_USERNAME} / {password}")
        if args.no_serve:
            return 0
        print(f"Site: http://{HOST}:{args.port}/   admin: http://{HOST}:{args.port}/admin/")
        print("Ctrl-C stops the site, the worker and both relays.\n", flush=True)
        web = Child(
            "web server",
            [sys.executable, "manage.py", "runserver", "--noreload", f"{HOST}:{args.port}"],
        )
        children.append(web)
        while web.running() and worker.running():
            time.sleep(0.5)
        for child in children:
            if not child.running():
                print(f"The {child.name} exited with code {child.process.returncode}.")
        return 1
    except KeyboardInterrupt:
        print("\nStopping ...")
        return 0
    finally:
        # Ignore further Ctrl-C while the children stop, so none is left behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for child in reversed(children):
            child.stop()
        up.stop()
        down.stop()
        print("Stopped.")


if __name__ == "__main__":
    sys.exit(main())
