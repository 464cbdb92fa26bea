"""The story the demo tells: the messages it queues, what it promises, and what happened.

``relay-down`` (priority 10) refuses every connection and ``relay-up``
(priority 20) accepts, but refuses ``nobody@`` with ``550 5.1.1``. So each
message must first fail over from ``relay-down`` to ``relay-up``; the
``nobody@`` recipients must fail with 5.1.1 and everyone else be delivered.
:func:`differences` checks exactly that, so a demo that tells another story
says so instead of looking fine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DOWN, UP = "relay-down", "relay-up"
UNKNOWN_USER = "nobody"
UNKNOWN_USER_CODE = "5.1.1"
SUBMITTED_SUBJECT = "Submitted over SMTP: nightly backup"
SUBMITTED_TO = "erin@example.com"


@dataclass(frozen=True)
class Promise:
    """How one demo message ends: its state, and each recipient's."""

    subject: str
    status: str
    recipients: dict[str, str]


# In the order queue_messages() queues them.
PROMISES = (
    Promise("Plain text: hello", "sent", {"alice@example.com": "delivered"}),
    Promise(
        "HTML with an attachment",
        "sent",
        {"bob@example.com": "delivered", "carol@example.com": "delivered"},
    ),
    Promise(
        "One good recipient, one unknown",
        "sent",
        {"dave@example.com": "delivered", f"{UNKNOWN_USER}@example.com": "failed"},
    ),
    Promise("Only an unknown recipient", "failed", {f"{UNKNOWN_USER}@example.org": "failed"}),
    # Submitted over SMTP (STARTTLS and AUTH) by another program: submit_over_smtp().
    Promise(SUBMITTED_SUBJECT, "sent", {SUBMITTED_TO: "delivered"}),
)
# The messages queue_messages() queues through Django; the last one comes over SMTP.
SITE_MESSAGES = 4


def queue_messages() -> list[int]:
    """Queue the demo's messages through Django's mail API; return their ids."""
    from django.core.mail import EmailMessage, EmailMultiAlternatives, send_mail
    from django.db import transaction

    from django_smtprelay.models import Message

    plain, html_report, half_known, unknown = (p.subject for p in PROMISES[:SITE_MESSAGES])
    start = Message.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    with transaction.atomic():
        send_mail(plain, "Hello Alice, this is a plain text message.", None, ["alice@example.com"])
        html = EmailMultiAlternatives(
            html_report,
            "Hi Bob, the report is attached.",
            to=["bob@example.com"],
            cc=["carol@example.com"],
        )
        html.attach_alternative("<p>Hi Bob, the <b>report</b> is attached.</p>", "text/html")
        html.attach("report.csv", "month,sent\njanuary,42\n", "text/csv")
        html.send()
        EmailMessage(
            half_known,
            "Dave gets this; the relay refuses the other address with 550 5.1.1.",
            to=["dave@example.com", f"{UNKNOWN_USER}@example.com"],
        ).send()
        EmailMessage(
            unknown,
            "Nobody gets this: every recipient is refused, so the message fails.",
            to=[f"{UNKNOWN_USER}@example.org"],
        ).send()
    return list(Message.objects.filter(pk__gt=start).order_by("pk").values_list("pk", flat=True))


def queued_after(last_id: int) -> list[int]:
    """The ids of messages queued after ``last_id`` (the one submitted over SMTP)."""
    from django_smtprelay.models import Message

    return list(Message.objects.filter(pk__gt=last_id).order_by("pk").values_list("pk", flat=True))


def _messages(ids: list[int]) -> list[Any]:
    from django_smtprelay.models import Message

    return list(
        Message.objects.filter(pk__in=ids)
        .order_by("pk")
        .select_related("submission_account")
        .prefetch_related("recipients__route", "attempts")
    )


def _attempts(message: Any) -> list[Any]:
    return sorted(message.attempts.all(), key=lambda a: (a.started_at, a.pk))


def report(ids: list[int], relay: Any, here: Path) -> None:
    """Print, for each message, every attempt and each recipient's fate."""
    for message in _messages(ids):
        print(f"\n  #{message.pk} {message.subject!r}: {message.get_status_display().upper()}")
        for attempt in _attempts(message):
            code = " ".join(str(x) for x in (attempt.smtp_code, attempt.enhanced_code) if x)
            reply = " ".join(x for x in (code, attempt.reply) if x)
            print(f"    tried {attempt.route_name:<10} {attempt.get_outcome_display()}: {reply}")
        for rcpt in message.recipients.all():
            route = rcpt.route.name if rcpt.route else "-"
            detail = rcpt.reply or (f"{rcpt.smtp_code}" if rcpt.smtp_code else "")
            print(f"    {rcpt.address:<24} {rcpt.get_status_display():<9} via {route}  {detail}")
        if message.submission_account is not None:
            print(f"    submitted over SMTP by the account {message.submission_account.username}")
        received = relay.find(message.message_id)
        if received is not None:
            print(f"    {UP} stored it as {os.path.relpath(received.path, here)}")


def differences(ids: list[int], relay: Any) -> list[str]:
    """Every way the messages ``ids`` ended otherwise than :data:`PROMISES` says; [] if none."""
    from django_smtprelay.models import DeliveryAttempt, Message, Recipient

    messages = _messages(ids)
    found: list[str] = []
    if len(messages) != len(PROMISES):
        found.append(f"{len(messages)} messages were queued, not {len(PROMISES)}")
    for message, promise in zip(messages, PROMISES, strict=False):
        label = f"#{message.pk} {message.subject!r}"
        if message.subject != promise.subject:
            found.append(f"{label} was expected to be {promise.subject!r}")
        if message.status not in Message.FINAL_STATES:
            found.append(f"{label} is still {message.status}, not {promise.status}")
            continue  # the rest of its story has not happened yet
        if message.status != promise.status:
            why = f" ({message.last_error})" if message.last_error else ""
            found.append(f"{label} is {message.status}, not {promise.status}{why}")
        tried = [(a.route_name, a.outcome) for a in _attempts(message)]
        if not tried or tried[0] != (DOWN, DeliveryAttempt.Outcome.ROUTE_FAULT):
            first = f"{tried[0][1]} on {tried[0][0]}" if tried else "none"
            found.append(
                f"{label} shows no failover: its first attempt was {first}, "
                f"not a route fault on {DOWN}"
            )
        elif UP not in (name for name, _ in tried[1:]):
            found.append(f"{label} was never tried on {UP} after {DOWN}")
        found += _recipient_differences(label, message, promise)
        if promise.subject == SUBMITTED_SUBJECT:
            found += _submission_differences(label, message)
        delivered = Recipient.Status.DELIVERED in promise.recipients.values()
        if delivered and relay.find(message.message_id) is None:
            found.append(f"{label} is not in {UP}'s mailbox")
    return found


def _recipient_differences(label: str, message: Any, promise: Promise) -> list[str]:
    from django_smtprelay.models import Recipient

    found: list[str] = []
    rcpts = {r.address: r for r in message.recipients.all()}
    for address, status in promise.recipients.items():
        rcpt = rcpts.get(address)
        if rcpt is None:
            found.append(f"{label} has no recipient {address}")
        elif rcpt.status != status:
            why = f" ({rcpt.reply})" if rcpt.reply else ""
            found.append(f"{label}: {address} is {rcpt.status}, not {status}{why}")
        elif status == Recipient.Status.FAILED and rcpt.enhanced_code != UNKNOWN_USER_CODE:
            found.append(
                f"{label}: {address} failed with {rcpt.enhanced_code or 'no code'}, "
                f"not {UNKNOWN_USER_CODE} from {UP} ({rcpt.reply})"
            )
        elif status == Recipient.Status.DELIVERED and getattr(rcpt.route, "name", "") != UP:
            found.append(f"{label}: {address} was delivered through {rcpt.route}, not {UP}")
    return found


def _submission_differences(label: str, message: Any) -> list[str]:
    """The submitted message came with its account, and with one Received header first."""
    found = []
    if message.submission_account is None:
        found.append(f"{label} has no submission account")
    if not bytes(message.content.raw).startswith(b"Received: from "):
        found.append(f"{label} does not start with the listener's Received header")
    return found
