"""Run the example site with everything it needs, on 127.0.0.1 only, until Ctrl-C.

Migrates the database, starts from a clean demo state (see ``demo_reset``),
(re)sets the ``admin`` login, starts two local relays (``relay-down`` refuses
every connection, ``relay-up`` accepts), points the routes at them, starts a
Celery worker with beat and the SMTP submission listener, queues a few
messages and submits one over SMTP (STARTTLS and AUTH), waits until each is final,
prints where it went and checks that against the story the demo promises
(see ``story``), then serves the site.

Run it from this folder: ``python demo.py [--port 8000]``. With ``--no-serve``
it exits after the report instead, non-zero when the story differed.
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

import demo_submission
import story
from demo_reset import reset_demo_state

HERE = Path(__file__).resolve().parent
HOST = "127.0.0.1"
ADMIN_USERNAME = "admin"


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
        name=story.DOWN, defaults={**common, "port": down_port, "priority": 10}
    )
    Route.objects.update_or_create(
        name=story.UP, defaults={**common, "port": up_port, "priority": 20}
    )


def prepare_broker() -> None:
    """Create the broker's tables now, so the worker and this process never race to."""
    from example_project.celery import app

    with app.connection_for_write() as conn:
        conn.default_channel.queue_declare(queue=app.conf.task_default_queue)


class WorkerExited(RuntimeError):
    """The Celery worker stopped before the demo's messages were final."""


def wait_until_final(ids: list[int], worker: Child, timeout: float) -> bool:
    """Wait until every message is sent, failed or cancelled; False on timeout."""
    from django_smtprelay.models import Message

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not worker.running():
            raise WorkerExited(
                f"The Celery worker exited with code {worker.process.returncode}; "
                f"the end of {worker.log}:\n{worker.tail()}"
            )
        pending = Message.objects.filter(pk__in=ids).unfinished()
        if not pending.exists():
            return True
        time.sleep(0.5)
    return False


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
    worker_log = var / "log" / "worker.log"
    children: list[Child] = []
    down = RefusingRelay()
    up = RecordingRelay(var / "mailbox", unknown_users=frozenset({story.UNKNOWN_USER}))
    try:
        print(f"Database: {settings.DATABASES['default']['NAME']}")
        call_command("migrate", interactive=False, verbosity=0)
        print(reset_demo_state(up.mailbox, worker_log))
        password = reset_admin_password()

        down_port, up_port = down.start(), up.start()
        point_routes(down_port, up_port)
        print(f"{story.DOWN}: {HOST}:{down_port}  refuses every connection (priority 10)")
        print(
            f"{story.UP}:   {HOST}:{up_port}  accepts, stores mail in {up.mailbox}, "
            f"refuses {story.UNKNOWN_USER}@ with 550 5.1.1 (priority 20)"
        )

        prepare_broker()
        worker = Child(
            "celery worker",
            [sys.executable, "-m", "celery", "-A", "example_project", "worker", "-B",
             "--pool=solo", "--loglevel=INFO", "--without-mingle", "--without-gossip"],
            log=worker_log,
        )  # fmt: skip
        children.append(worker)
        print(f"Celery worker with beat: pid {worker.process.pid}, log {worker.log}")

        ca_file = demo_submission.make_certificates(var / "tls")
        smtp_password = demo_submission.reset_account()
        smtp_port = demo_submission.free_port()
        smtp_address = f"starttls://{HOST}:{smtp_port}"
        listener = Child(
            "SMTP listener",
            [sys.executable, "manage.py", "smtprelay_serve", "--listen", smtp_address],
            log=var / "log" / "listener.log",
        )
        children.append(listener)
        if not demo_submission.wait_for_listener(smtp_port):
            raise WorkerExited(
                f"The SMTP listener did not start; the end of {listener.log}:\n{listener.tail()}"
            )
        print(f"SMTP listener: {smtp_address} (pid {listener.process.pid}, log {listener.log})")

        ids = story.queue_messages()
        reply = demo_submission.submit(
            smtp_port, ca_file, smtp_password, story.SUBMITTED_SUBJECT, story.SUBMITTED_TO
        )
        print(
            f"Queued {len(ids)} messages through Django, and submitted one over SMTP "
            f"(STARTTLS, AUTH as {demo_submission.ACCOUNT}): {reply}"
        )
        ids += story.queued_after(ids[-1])
        print(f"Waiting up to {args.wait:.0f} s for delivery ...")
        final = wait_until_final(ids, worker, args.wait)
        if not final:
            print(f"Not all messages were final after {args.wait:.0f} s; see {worker.log}.")
        print("Where each message went (every attempt, then each recipient):")
        story.report(ids, up, HERE)

        problems = story.differences(ids, up)
        if problems:
            print("\nThe demo did not go as promised:")
            for problem in problems:
                print(f"  - {problem}")
            print(f"The worker's log is {worker.log}; make demo starts over from a clean state.")
        else:
            print(
                f"\nAs promised: every message failed over from {story.DOWN} to {story.UP} "
                f"(the one submitted over SMTP too); {story.UP} refused {story.UNKNOWN_USER}@ "
                f"with 550 {story.UNKNOWN_USER_CODE} and delivered the rest."
            )

        print(f"\nAdmin login: {ADMIN_USERNAME} / {password}")
        if args.no_serve:
            print(
                "Not serving (--no-serve). To see these messages in the admin, run\n"
                f"  cd {HERE} && {sys.executable} manage.py runserver {HOST}:{args.port}\n"
                f"and open http://{HOST}:{args.port}/admin/ (make demo serves it too, "
                "after starting over)."
            )
            return 1 if problems else 0
        print(f"Admin: http://{HOST}:{args.port}/admin/ (Outbound mail: these messages,")
        print("  every attempt, the routes, their health and the suppressions)")
        print(f"Site:  http://{HOST}:{args.port}/ (queue a message of your own)")
        print(
            f"SMTP:  {smtp_address} (STARTTLS, CA {ca_file}), login "
            f"{demo_submission.ACCOUNT} / {smtp_password}, sender {demo_submission.SENDER}"
        )
        print("Ctrl-C stops the site, the worker, the listener and both relays.\n", flush=True)
        web = Child(
            "web server",
            [sys.executable, "manage.py", "runserver", "--noreload", f"{HOST}:{args.port}"],
        )
        children.append(web)
        while web.running() and worker.running() and listener.running():
            time.sleep(0.5)
        for child in children:
            if not child.running():
                print(f"The {child.name} exited with code {child.process.returncode}.")
        return 1
    except WorkerExited as exc:
        print(f"\n{exc}")
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
