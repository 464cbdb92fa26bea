"""End to end through a real Celery worker: send_mail in, the relay has it, the row says sent."""

from __future__ import annotations

import time

import pytest
from django.core.mail import send_mail

from django_smtprelay import tasks
from django_smtprelay.models import Message

pytestmark = pytest.mark.django_db(transaction=True)


def wait_until(predicate, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_send_mail_is_delivered_by_a_worker(celery_worker, smtp_server, make_route, relay_settings):
    server = smtp_server()
    make_route(server)
    relay_settings(PUBLISH_ON_COMMIT=True)
    send_mail("Through Celery", "Body", "from@example.com", ["to@example.com"])
    server.wait_for(1, timeout=20)
    assert wait_until(lambda: Message.objects.filter(status="sent").count() == 1)
    assert server.messages[0].rcpt_tos == ("to@example.com",)


def test_failover_through_the_worker(
    celery_worker, smtp_server, make_route, relay_settings, refused_port
):
    make_route(port=refused_port, name="down", priority=1)
    up = smtp_server()
    make_route(up, name="up", priority=2)
    relay_settings(PUBLISH_ON_COMMIT=True)
    for i in range(3):
        send_mail(f"m{i}", "Body", "from@example.com", [f"to{i}@example.com"])
    up.wait_for(3, timeout=20)
    assert wait_until(lambda: Message.objects.filter(status="sent").count() == 3)
    assert Message.objects.filter(attempts__route_name="down").distinct().count() == 3


def test_a_task_delivered_twice_sends_nothing_twice(smtp_server, make_route):
    server = smtp_server()
    make_route(server)
    send_mail("Once", "Body", "from@example.com", ["to@example.com"])
    ids = list(Message.objects.values_list("pk", flat=True))
    assert tasks.deliver.apply(args=(ids,)).get() == 1
    assert tasks.deliver.apply(args=(ids,)).get() == 0
    assert len(server.messages) == 1


def test_the_sweep_delivers_what_was_never_published(celery_worker, smtp_server, make_route):
    server = smtp_server()
    make_route(server)
    send_mail("Missed", "Body", "from@example.com", ["to@example.com"])  # publishing is off
    assert Message.objects.get().status == "queued"
    tasks.sweep.delay()
    server.wait_for(1, timeout=20)
    assert wait_until(lambda: Message.objects.get().status == "sent")


def test_tasks_take_ids_and_ack_late():
    for task in (tasks.deliver, tasks.sweep):
        assert task.acks_late is True
    assert tasks.deliver.name == "django_smtprelay.deliver"
