"""One measured step, run in a fresh process: ``python -m bench.scenarios STEP [options]``.

Each step prints one ``BENCH-RESULT {json}`` line, with the process's peak
resident memory, so ``run.py`` gets clean numbers for every step.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import smtplib
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from bench import sink, workload  # noqa: E402

STEPS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {}


def step(func: Callable[[argparse.Namespace], dict[str, Any]]) -> Callable[..., Any]:
    STEPS[func.__name__.replace("_", "-")] = func
    return func


@step
def migrate(args: argparse.Namespace) -> dict[str, Any]:
    call_command("migrate", verbosity=0, interactive=False)
    return {}


@step
def baseline(args: argparse.Namespace) -> dict[str, Any]:
    """Python's smtplib: the same messages, prebuilt, over one persistent connection."""
    from django.core.mail import EmailMessage

    from django_smtprelay.envelope import prepare

    messages = [
        prepare(EmailMessage(subject, body, sender, to))
        for subject, body, sender, to in workload.datatuples(args.n)
    ]
    started = time.perf_counter()
    conn = smtplib.SMTP("127.0.0.1", settings.EMAIL_PORT, local_hostname="bench.example.com")
    for m in messages:
        conn.sendmail(m.from_email, m.recipients, m.data)
    conn.quit()
    return {"seconds": time.perf_counter() - started}


@step
def enqueue(args: argparse.Namespace) -> dict[str, Any]:
    """Each queue's documented bulk API, timed from the caller's data to stored rows."""
    data = workload.datatuples(args.n)
    started = time.perf_counter()
    _enqueue(data)
    return {"seconds": time.perf_counter() - started}


def _enqueue(data: list[tuple[str, str, str, list[str]]]) -> None:
    if settings.SUBJECT == "smtprelay":
        from django.core.mail import send_mass_mail

        assert send_mass_mail(data) == len(data)
    elif settings.SUBJECT == "post_office":
        from post_office import mail

        mail.send_many(
            [
                {"sender": sender, "recipients": to, "subject": subject, "message": body}
                for subject, body, sender, to in data
            ]
        )
    else:
        import mailer

        mailer.send_mass_mail(data)


@step
def send_one(args: argparse.Namespace) -> dict[str, Any]:
    """One message per call, as a web request sends it: ``--n`` calls, each its own
    commit (no surrounding transaction), timed from the first to the last return.
    ``--skip``: the workload's messages before these were sent by earlier turns."""
    data = workload.datatuples(args.skip + args.n)[args.skip :]
    connection.ensure_connection()
    if settings.SUBJECT == "smtprelay":
        from django.core.mail import send_mail

        def one(subject: str, body: str, sender: str, to: list[str]) -> None:
            send_mail(subject, body, sender, to)

    elif settings.SUBJECT == "post_office":
        from post_office import mail

        def one(subject: str, body: str, sender: str, to: list[str]) -> None:
            mail.send(recipients=to, sender=sender, subject=subject, message=body)

    else:
        import mailer

        def one(subject: str, body: str, sender: str, to: list[str]) -> None:
            mailer.send_mail(subject, body, sender, to)

    # One untimed call first, for every queue alike: a process's first call
    # builds what the rest reuse (imports, statements), as a site's first
    # request after start-up does.
    one("Warm-up", workload.BODY, workload.SENDER, ["warm-up@example.com"])
    started = time.perf_counter()
    for item in data:
        one(*item)
    return {"seconds": time.perf_counter() - started}


@step
def commit_floor(args: argparse.Namespace) -> dict[str, Any]:
    """``--n`` one-row INSERTs, each its own commit: what any queue pays per call
    for durability (a WAL flush) before doing anything of its own."""
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE bench_commit_floor (x integer)")
        started = time.perf_counter()
        for i in range(args.n):
            cursor.execute("INSERT INTO bench_commit_floor (x) VALUES (%s)", [i])
        seconds = time.perf_counter() - started
        cursor.execute("DROP TABLE bench_commit_floor")
    return {"seconds": seconds}


@step
def enqueue_large(args: argparse.Namespace) -> dict[str, Any]:
    """``--n`` messages of about ``--mb`` MB each (a PDF-like attachment, base64 in
    the message), queued a few at a time so that this process stays small."""
    from django.core.mail import EmailMessage, get_connection

    attachment = random.Random(0).randbytes(int(args.mb * 1024 * 1024 * 3 / 4))
    backend = get_connection()
    sizes = []
    for start in range(0, args.n, 5):
        batch = []
        for i in range(start, min(start + 5, args.n)):
            message = EmailMessage(
                f"Report #{i}", workload.BODY, workload.SENDER, [workload.recipients(args.n)[i]]
            )
            message.attach(f"report-{i}.pdf", attachment, "application/pdf")
            batch.append(message)
        assert backend.send_messages(batch) == len(batch)
    if settings.SUBJECT == "smtprelay":
        from django_smtprelay.models import Message

        sizes = list(Message.objects.values_list("size", flat=True))
    return {"message_bytes": max(sizes) if sizes else 0, "total_bytes": sum(sizes)}


@step
def drain(args: argparse.Namespace) -> dict[str, Any]:
    """Deliver the whole queue with one worker, in this process."""
    connection.ensure_connection()
    result: dict[str, Any] = {}
    started = time.perf_counter()
    if settings.SUBJECT == "smtprelay":
        from django_smtprelay.delivery import DeliveryEngine

        report = DeliveryEngine().run()
        result["report"] = vars(report)
    elif settings.SUBJECT == "post_office":
        from post_office import mail

        mail.send_queued_mail_until_done()
    else:
        from mailer import engine

        engine.send_all()
    result["seconds"] = time.perf_counter() - started
    result["delivered_in_db"] = delivered_in_db()
    return result


def delivered_in_db() -> int:
    """How many messages the queue itself records as sent."""
    if settings.SUBJECT == "smtprelay":
        from django_smtprelay.models import Message, Recipient

        pending = Recipient.objects.exclude(status=Recipient.Status.DELIVERED).count()
        return Message.objects.filter(status=Message.Status.SENT).count() if not pending else -1
    if settings.SUBJECT == "post_office":
        from post_office.models import STATUS, Email

        return Email.objects.filter(status=STATUS.sent).count()
    from mailer.models import RESULT_SUCCESS, Message, MessageLog

    return (
        MessageLog.objects.filter(result=RESULT_SUCCESS).count()
        if not Message.objects.exists()
        else -1
    )


@step
def celery(args: argparse.Namespace) -> dict[str, Any]:
    """Enqueue, publishing on commit; a running Celery worker delivers. Timed to the last one."""
    import bench.celery_app  # noqa: F401  (a site loads its Celery app at start-up)

    data = workload.datatuples(args.n)
    started = time.perf_counter()
    _enqueue(data)
    enqueued = time.perf_counter()
    done = sink.wait_for_messages(Path(args.counters), args.n, timeout=args.timeout)
    deadline = time.monotonic() + 30
    while (delivered := delivered_in_db()) != args.n and time.monotonic() < deadline:
        time.sleep(0.05)  # the worker writes results just after the last send
    return {
        "enqueue_seconds": enqueued - started,
        "drain_seconds": done - enqueued,
        "seconds": done - started,
        "delivered_in_db": delivered,
    }


@step
def scale_worker(args: argparse.Namespace) -> dict[str, Any]:
    """One of several concurrent engine runs; starts when the go file appears."""
    from django_smtprelay.delivery import DeliveryEngine

    connection.ensure_connection()
    Path(args.ready).touch()
    while not Path(args.go).exists():
        time.sleep(0.001)
    started = time.time()
    report = DeliveryEngine().run()
    return {"started": started, "finished": time.time(), "report": vars(report)}


def _esp_options() -> dict[str, str]:
    return {"server_token": "bench-token", "api_url": os.environ["BENCH_ESP_URL"]}


@step
def esp_baseline(args: argparse.Namespace) -> dict[str, Any]:
    """anymail's own Postmark backend: the same messages, prebuilt, sent in a loop."""
    from django.core.mail import EmailMessage, get_connection

    messages = [EmailMessage(*fields) for fields in workload.datatuples(args.n)]
    backend = get_connection("anymail.backends.postmark.EmailBackend", **_esp_options())
    started, cpu = time.perf_counter(), time.process_time()
    assert backend.send_messages(messages) == len(messages)
    return {"seconds": time.perf_counter() - started, "cpu_seconds": time.process_time() - cpu}


@step
def esp_drain(args: argparse.Namespace) -> dict[str, Any]:
    """Deliver the whole queue through an ESP route (Postmark's API), with one worker."""
    from django_smtprelay import esps
    from django_smtprelay.delivery import DeliveryEngine
    from django_smtprelay.models import Route

    Route.objects.create(
        name="postmark", kind="anymail", esp="postmark", esp_options=_esp_options()
    )
    connection.ensure_connection()
    # What the baseline's get_connection() does before its clock starts: import
    # the ESP's backend (and read the options anymail takes), once a process.
    esps.get("postmark").backend_class()
    started, cpu = time.perf_counter(), time.process_time()
    report = DeliveryEngine().run()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "report": vars(report),
        "delivered_in_db": delivered_in_db(),
    }


@step
def webhooks(args: argparse.Namespace) -> dict[str, Any]:
    """ESP events posted one by one to a route's webhook URL (see bench/webhooks.py)."""
    from bench.webhooks import run

    return run(args.n)


@step
def count_delivered(args: argparse.Namespace) -> dict[str, Any]:
    return {"delivered_in_db": delivered_in_db()}


@step
def count_queued(args: argparse.Namespace) -> dict[str, Any]:
    """Messages in the queue (what the submission listener stored)."""
    from django_smtprelay.models import Message

    return {"queued": Message.objects.count()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("step", choices=sorted(STEPS))
    parser.add_argument("--n", type=int, default=0)
    parser.add_argument("--skip", type=int, default=0, help="send-one: start at this message")
    parser.add_argument("--counters", help="smtp-sink -c output file (celery step)")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--mb", type=float, default=10, help="enqueue-large: MB per message")
    parser.add_argument("--ready")
    parser.add_argument("--go")
    args = parser.parse_args(argv)
    result = STEPS[args.step](args)
    result["maxrss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sys.stdout.write("BENCH-RESULT " + json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
