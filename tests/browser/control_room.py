"""A day in the life of a small shop's outbound mail, made by real deliveries.

The browser tests and the README's screenshots read this data set. Nothing in
it is written by hand into the queue: every message is queued through
Django's mail API and delivered by the engine to loopback relays, whose
scripted replies (an unknown user, greylisting, a full mailbox, a relay that
refuses connections) give the failures, deferrals, failovers and the open
circuit the admin shows. The history of the last day and month comes from
the same deliveries run under the engine's clock set back in time (the
messages' creation times set back with it): the statistics, attempts and
recipient times are the engine's own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.utils import timezone

from django_smtprelay.delivery import DeliveryEngine
from django_smtprelay.models import Message, Route

SENDER = "Northwind Shop <shop@shop.test>"
RELAY_PASSWORD = "Relay-Pa55word-do-not-show"

UNKNOWN_USER = "550 5.1.1 <{}>: Recipient address rejected: User unknown in virtual mailbox table"
GREYLISTED = "451 4.7.1 Greylisted, please try again in 300 seconds"
MAILBOX_FULL = "552 5.2.2 <{}>: Mailbox full, quota exceeded (mailbox for user is full)"


class RelayScript:
    """The main relay's RCPT replies: unknown users and full mailboxes always, greylisting
    once per address (the retry gets through), everyone else accepted."""

    def __init__(self) -> None:
        self.greylisted: set[str] = set()

    def __call__(self, address: str) -> str | None:
        if re.fullmatch(r"(nobody|old\.customer|typo)[\w.]*@example\.(com|org)", address):
            return UNKNOWN_USER.format(address)
        if re.fullmatch(r"full[\w.]*@example\.org", address):
            return MAILBOX_FULL.format(address)
        greylisted = re.fullmatch(r"(grey|busy)[\w.]*@example\.net", address)
        if greylisted and address not in self.greylisted:
            self.greylisted.add(address)
            return GREYLISTED
        return None


NEWSLETTER_HTML = """\
<html><body style="font-family:sans-serif;max-width:560px">
<h1 style="color:#2e5c8a">November at Northwind</h1>
<p>Hello {name},</p>
<p>Our winter collection is here: <b>warm wool socks</b>, hand-made mugs and
<a href="https://shop.test/winter">much more</a>.</p>
<img src="{pixel}" width="1" height="1" alt="">
<p>See you soon,<br>the Northwind team</p>
</body></html>
"""


@dataclass
class ControlRoom:
    """What the tests look for in the data set."""

    now: datetime
    routes: dict[str, Route] = field(default_factory=dict)
    messages: dict[str, Message] = field(default_factory=dict)
    old_failure_address: str = ""

    def refresh(self, name: str) -> Message:
        return Message.objects.get(pk=self.messages[name].pk)


def _send(subject: str, to: list[str], body: str = "", **attrs: Any) -> Message:
    body = body or f"{subject}\n\nThank you for shopping with us."
    email = EmailMessage(subject, body, SENDER, to)
    for key, value in attrs.items():
        setattr(email, f"smtprelay_{key}", value)
    email.send()
    return Message.objects.latest("pk")


def _newsletter(to: list[str], pixel_url: str) -> Message:
    email = EmailMultiAlternatives(
        "November at Northwind: the winter collection",
        "Hello,\n\nOur winter collection is here: https://shop.test/winter\n\n"
        "See you soon,\nthe Northwind team\n",
        SENDER,
        to,
    )
    email.attach_alternative(NEWSLETTER_HTML.format(name="friend", pixel=pixel_url), "text/html")
    email.send()
    return Message.objects.latest("pk")


def _deliver_at(when: datetime) -> None:
    """Run the engine as if it were ``when``: what is due then is delivered then."""
    DeliveryEngine(clock=lambda: when).run()


def _queued_at(messages: list[Message], when: datetime) -> None:
    Message.objects.filter(pk__in=[m.pk for m in messages]).update(
        created_at=when, next_attempt_at=when
    )


# The history: (hours ago, messages sent then). A quiet night, a busy morning.
HOURLY = (23, 20, 17, 14, 12, 10, 9, 8, 6, 5, 3, 2)
DAILY = (28, 25, 21, 18, 14, 11, 7, 4, 2)
ORDERS = iter(range(2040, 100_000))


def _history(now: datetime) -> None:
    """Messages of the past 30 days, delivered at their own times."""
    slots = [now - timedelta(days=d, hours=3) for d in DAILY] + [
        now - timedelta(hours=h, minutes=20) for h in HOURLY
    ]
    for i, when in enumerate(slots):
        made = [
            _send(f"Your order #{next(ORDERS)} has shipped", [f"customer{i}.{k}@example.com"])
            for k in range(2 + (i * 7) % 5)
        ]
        made.append(_send("Welcome to Northwind", [f"new{i}@example.org"]))
        if i % 3 == 0:
            made.append(_send(f"Invoice {next(ORDERS)}", [f"old.customer{i}@example.com"]))
        if i % 4 == 1:
            made.append(_send("Your basket is waiting", [f"grey{i}@example.net"]))
        _queued_at(made, when)
        _deliver_at(when + timedelta(seconds=5))
    # The greylisted ones were retried at their next attempt, and got through.
    _deliver_at(now - timedelta(minutes=70))


def build(routes: dict[str, Route], pixel_url: str) -> ControlRoom:
    """The data set: history, then the last hour's messages, then what is still queued."""
    now = timezone.now()
    room = ControlRoom(now=now, routes=routes)
    _history(now)
    room.old_failure_address = "old.customer0@example.com"
    made = room.messages
    made["sent"] = _send("Welcome aboard", ["alice@example.com"])
    made["newsletter"] = _newsletter(
        ["bob@example.com", "carol@example.org", "typo.dave@example.com"], pixel_url
    )
    made["failed"] = _send("Invoice 1042", ["nobody@example.com"])
    made["deferred"] = _send("Weekly report", ["busy@example.net"])
    made["mailbox_full"] = _send("Your order #1043 has shipped", ["full.erin@example.org"])
    made["expired"] = _send(
        "Your sign-in code", ["frank@example.com"], expires_at=now - timedelta(minutes=1)
    )
    DeliveryEngine().run()
    made["queued"] = _send("Password reset", ["carol@example.org"])
    made["queued_later"] = _send("Your order #1044 has shipped", ["grace@example.com"])
    for name, message in made.items():
        made[name] = Message.objects.get(pk=message.pk)
    return room
