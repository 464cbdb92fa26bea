"""The webhook step: ESP events posted as an ESP would, through Django's test client.

Measured twice on the same events in the same process: through anymail's own
Postmark view with nothing listening (the baseline: what parsing and the
request cost anyway), then through a route's webhook URL, where each event
is matched and recorded. A third pass posts every event again: each must be
refused as a duplicate. Postmark posts one event per request, so each post
is a commit of its own.

Then the same one-event posts for another set of messages are posted by
``CLIENTS`` connections at once to a threaded WSGI server on 127.0.0.1, as
an ESP posts them: to anymail's view alone (its baseline), then to the
route's URL, where the events of posts arriving together share a commit
(``django_smtprelay.tracking.group``).

A last pass posts the same number of events for another set of messages as
SendGrid does, many events a request (``BATCH`` here), each event carrying
our own id as the metadata the route sent (SendGrid echoes it): one commit
per post, so it shows what applying an event costs once the commit is shared.
"""

from __future__ import annotations

import base64
import http.client
import json
import multiprocessing
import os
import socket
import threading
import time
import warnings
from typing import Any

SECRET = "bench:webhook-secret"
BOUNCE_EVERY = 10  # one event in ten is a hard bounce, the rest deliveries
BATCH = 100  # SendGrid's events per post in the batched pass
# Connections posting at once in the concurrent pass.
CLIENTS = int(os.environ.get("BENCH_WEBHOOK_CLIENTS") or 16)


def _clients(
    host: str, port: int, url: str, posts: list[bytes], auth: str, clients: int, results: Any
) -> None:
    """In the clients' process: ``clients`` threads, each posting its share over
    one kept connection; puts (wall seconds, errors) in ``results``."""
    errors: list[str] = []
    start = threading.Barrier(clients + 1)

    def client(bodies: list[bytes]) -> None:
        conn = http.client.HTTPConnection(host, port, timeout=60)
        headers = {"Content-Type": "application/json", "Authorization": auth}
        start.wait()
        try:
            for body in bodies:
                conn.request("POST", url, body, headers)
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    errors.append(f"{url}: HTTP {response.status}")
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(posts[k::clients],)) for k in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    results.put((time.perf_counter() - started, errors))


def post_concurrently(
    url: str, posts: list[bytes], auth: str, clients: int = CLIENTS
) -> tuple[float, float]:
    """Wall seconds and this process's (the server's) CPU seconds to post every body,
    ``clients`` connections at once (each keeps its connection), to the project
    on a threaded server at 127.0.0.1."""
    from django.core.handlers.wsgi import WSGIHandler
    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler

    class Quiet(WSGIRequestHandler):
        def setup(self) -> None:
            super().setup()
            # As production servers do: the response's headers and body are two
            # writes, and Nagle would hold the second for the client's delayed ACK.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, *args: Any) -> None:
            pass

    class Server(ThreadedWSGIServer):
        # Room for every client's connection at once (socketserver's default of
        # 5 drops the rest, and a dropped connection tries again a second later).
        request_queue_size = 128

    server = Server(("127.0.0.1", 0), Quiet, allow_reuse_address=False)
    server.set_app(WSGIHandler())
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    serving.start()
    host, port = server.server_address[:2]
    # The clients in a process of their own, as an ESP's are on machines of
    # their own: in this one they would take turns with the server for the GIL.
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    process = context.Process(
        target=_clients, args=(host, port, url, posts, auth, clients, results)
    )
    try:
        process.start()
        cpu = time.process_time()
        seconds, errors = results.get(timeout=3600)
        elapsed = seconds, time.process_time() - cpu
        process.join(60)
    finally:
        server.shutdown()
        server.server_close()
        serving.join()
    if errors:
        raise RuntimeError(f"{len(errors)} posts failed, the first: {errors[0]}")
    return elapsed


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
    # As many messages again, for the concurrent pass.
    send_mass_mail(data)
    concurrent_rows = Recipient.objects.filter(pk__gt=rows[-1][0] if rows else 0)
    Message.objects.filter(recipients__in=concurrent_rows).update(status=Message.Status.SENT)
    concurrent_rows.update(
        status=Recipient.Status.DELIVERED,
        route=route,
        provider_message_id=Concat(Value("pm-"), Cast("pk", output_field=CharField())),
    )
    concurrent_listed = list(concurrent_rows.order_by("pk").values_list("pk", "address"))
    concurrent_bodies = payloads(concurrent_listed)
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
    concurrent_baseline = post_concurrently(
        "/anymail-only/postmark/tracking/", concurrent_bodies, auth
    )
    receivers.connect()
    applied = post_all(f"/smtprelay/webhooks/{route.name}/tracking/")
    events = RecipientEvent.objects.count()
    failed = Recipient.objects.filter(status=Recipient.Status.FAILED).count()
    replayed = post_all(f"/smtprelay/webhooks/{route.name}/tracking/")
    events_after_replay = RecipientEvent.objects.count()
    concurrent = post_concurrently(
        f"/smtprelay/webhooks/{route.name}/tracking/", concurrent_bodies, auth
    )
    concurrent_events = RecipientEvent.objects.count() - events_after_replay
    concurrent_failed = concurrent_rows.filter(status=Recipient.Status.FAILED).count()

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
        "clients": CLIENTS,
        "concurrent_baseline_seconds": concurrent_baseline[0],
        "concurrent_baseline_cpu_seconds": concurrent_baseline[1],
        "concurrent_seconds": concurrent[0],
        "concurrent_cpu_seconds": concurrent[1],
        "concurrent_events": concurrent_events,
        "concurrent_failed": concurrent_failed,
        "concurrent_expected_failed": sum(
            1 for pk, _ in concurrent_listed if pk % BOUNCE_EVERY == 0
        ),
        "batched_seconds": batched[0],
        "batched_cpu_seconds": batched[1],
        "batched_events": RecipientEvent.objects.count() - events_before,
        "batched_failed": batch_rows.filter(status=Recipient.Status.FAILED).count(),
        "batched_expected_failed": sum(1 for pk, _m, _a in listed if pk % BOUNCE_EVERY == 0),
    }
