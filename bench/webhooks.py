"""The webhook step: ESP events posted one by one, as an ESP would, through Django's test client.

Measured twice on the same events in the same process: through anymail's own
Postmark view with nothing listening (the baseline: what parsing and the
request cost anyway), then through a route's webhook URL, where each event
is matched and recorded. A last pass posts every event again: each must be
refused as a duplicate.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

SECRET = "bench:webhook-secret"
BOUNCE_EVERY = 10  # one event in ten is a hard bounce, the rest deliveries


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


def run(n: int) -> dict[str, Any]:
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

    def post_all(url: str) -> tuple[float, float]:
        """Wall seconds and this process's CPU seconds (the machine may be shared)."""
        started, cpu = time.perf_counter(), time.process_time()
        for body in bodies:
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
    return {
        "n": n,
        "baseline_seconds": baseline[0],
        "baseline_cpu_seconds": baseline[1],
        "seconds": applied[0],
        "cpu_seconds": applied[1],
        "replay_seconds": replayed[0],
        "events": events,
        "events_after_replay": RecipientEvent.objects.count(),
        "failed": failed,
        "expected_failed": sum(1 for pk, _ in rows if pk % BOUNCE_EVERY == 0),
    }
