"""The webhook step: ESP events posted as an ESP would, through Django's test client.

Measured twice on the same events in the same process: through anymail's own
Postmark view with nothing listening (the baseline: what parsing and the
request cost anyway), then through a route's webhook URL, where each event
is matched and recorded. A third pass posts every event again: each must be
refused as a duplicate. Postmark posts one event per request, so each post
is a commit of its own.

A last pass posts the same number of events for another set of messages as
SendGrid does, many events a request (``BATCH`` here), each event carrying
our own id as the metadata the route sent (SendGrid echoes it): one commit
per post, so it shows what applying an event costs once the commit is shared.
"""

from __future__ import annotations

import base64
import json
import time
import warnings
from typing import Any

SECRET = "bench:webhook-secret"
BOUNCE_EVERY = 10  # one event in ten is a hard bounce, the rest deliveries
BATCH = 100  # SendGrid's events per post in the batched pass


def payloads(recipients: list[tuple[int, str]]) -> list[bytes]:
    posts = []
    for pk, address in recipients:
        if pk % BOUNCE_EVERY == 0:
            event = {
                "RecordType": "Bounce",
                "ID": pk,
                "Type": "HardBounce",
                "MessageID": f"pm-{pk}",
                "Email": address,
                "BouncedAt": "2026-11-30T10:16:40Z",
                "Details": "smtp;550 5.1.1 unknown user",
                "Description": "Unknown user",
                "Metadata": {},
            }
        else:
            event = {
                "RecordType": "Delivery",
                "MessageID": f"pm-{pk}",
                "Recipient": address,
                "DeliveredAt": "2026-11-30T10:15:02Z",
                "Details": "smtp;250 2.0.0 OK",
                "Metadata": {},
            }
        posts.append(json.dumps(event).encode())
    return posts


def sendgrid_batches(recipients: list[tuple[int, int, str]]) -> list[bytes]:
    """SendGrid event posts: ``BATCH`` events each, our id in every event (its custom args)."""
    events = []
    for pk, message_pk, address in recipients:
        event: dict[str, Any] = {
            "email": address,
            "timestamp": 1764497100,
            "smtp-id": f"<{pk}@bench.example>",
            "sg_event_id": f"sg-{pk}",
            "sg_message_id": f"sg-{pk}.filterdrecv",
            "smtprelay_id": f"smtprelay-{message_pk}.{pk}",
        }
        if pk % BOUNCE_EVERY == 0:
            event.update(event="bounce", type="bounce", reason="550 5.1.1 unknown user")
        else:
            event.update(event="delivered", response="250 2.0.0 OK")
        events.append(event)
    return [json.dumps(events[i : i + BATCH]).encode() for i in range(0, len(events), BATCH)]


def run(n: int) -> dict[str, Any]:
    from anymail.exceptions import AnymailNotSupportedWarning
    from anymail.signals import tracking
    from django.core.mail import send_mass_mail
    from django.db.models import CharField, Value
    from django.db.models.functions import Cast, Concat
    from django.test import Client

    from django_smtprelay.models import Message, Recipient, RecipientEvent, Route
    from django_smtprelay.tracking import receivers

    route = Route(name="bench-postmark", host="smtp.postmarkapp.example", esp="postmark")
    route.webhook_secret = SECRET
    route.save()
    data = [("Receipt", "Body", "shop@example.com", [f"user{i}@example.com"]) for i in range(n)]
    send_mass_mail(data)
    Message.objects.update(status=Message.Status.SENT)
    Recipient.objects.update(
        status=Recipient.Status.DELIVERED,
        route=route,
        provider_message_id=Concat(Value("pm-"), Cast("pk", output_field=CharField())),
    )
    rows = list(Recipient.objects.order_by("pk").values_list("pk", "address"))
    bodies = payloads(rows)
    auth = "Basic " + base64.b64encode(SECRET.encode()).decode()
    client = Client(HTTP_AUTHORIZATION=auth)

    def post_all(url: str, posts: list[bytes] = bodies) -> tuple[float, float]:
        """Wall seconds and this process's CPU seconds (the machine may be shared)."""
        started, cpu = time.perf_counter(), time.process_time()
        for body in posts:
            response = client.post(url, body, content_type="application/json")
            if response.status_code != 200:
                raise RuntimeError(f"{url}: HTTP {response.status_code}")
        return time.perf_counter() - started, time.process_time() - cpu

    tracking.disconnect(dispatch_uid="django_smtprelay.tracking")
    baseline = post_all("/anymail-only/postmark/tracking/")
    receivers.connect()
    applied = post_all(f"/smtprelay/webhooks/{route.name}/tracking/")
    events = RecipientEvent.objects.count()
    failed = Recipient.objects.filter(status=Recipient.Status.FAILED).count()
    replayed = post_all(f"/smtprelay/webhooks/{route.name}/tracking/")
    events_after_replay = RecipientEvent.objects.count()

    # The batched pass: as many events again, for messages sent through SendGrid
    # (whose official support anymail has dropped, and says so once).
    warnings.filterwarnings("ignore", category=AnymailNotSupportedWarning)
    sendgrid = Route(name="bench-sendgrid", host="smtp.sendgrid.example", esp="sendgrid")
    sendgrid.webhook_secret = SECRET
    sendgrid.save()
    first = Recipient.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    send_mass_mail(data)
    batch_rows = Recipient.objects.filter(pk__gt=first)
    batch_rows.update(status=Recipient.Status.DELIVERED, route=sendgrid)
    Message.objects.filter(recipients__in=batch_rows).update(status=Message.Status.SENT)
    listed = list(batch_rows.order_by("pk").values_list("pk", "message_id", "address"))
    events_before = RecipientEvent.objects.count()
    batched = post_all(f"/smtprelay/webhooks/{sendgrid.name}/tracking/", sendgrid_batches(listed))
    return {
        "n": n,
        "baseline_seconds": baseline[0],
        "baseline_cpu_seconds": baseline[1],
        "seconds": applied[0],
        "cpu_seconds": applied[1],
        "replay_seconds": replayed[0],
        "events": events,
        "events_after_replay": events_after_replay,
        "failed": failed,
        "expected_failed": sum(1 for pk, _ in rows if pk % BOUNCE_EVERY == 0),
        "batched_seconds": batched[0],
        "batched_cpu_seconds": batched[1],
        "batched_events": RecipientEvent.objects.count() - events_before,
        "batched_failed": batch_rows.filter(status=Recipient.Status.FAILED).count(),
        "batched_expected_failed": sum(1 for pk, _m, _a in listed if pk % BOUNCE_EVERY == 0),
    }
