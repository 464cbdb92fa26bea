"""Publishing on commit is bounded: a broker that is down or hung never holds up send_mail."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from celery import Celery, current_app
from django.core.mail import EmailMessage, get_connection, send_mail
from django.utils import timezone

from django_smtprelay.models import Message

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def hung_port() -> Iterator[int]:
    """A port on 127.0.0.1 that accepts connections and never says a word."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _addr = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)  # kept open, never read from or written to

    thread = threading.Thread(target=accept, name="hung-broker", daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(5)
    for conn in held:
        conn.close()
    listener.close()


@pytest.fixture
def broker_app() -> Iterator[Callable[[str], Celery]]:
    """``broker_app(url)``: a Celery app on that broker, current for the test's thread."""
    previous = current_app._get_current_object()
    apps: list[Celery] = []

    def make(url: str) -> Celery:
        app = Celery("publish-bound", broker=url)
        app.set_current()
        apps.append(app)
        return app

    yield make
    previous.set_current()
    # The publish thread outlives a timed-out send_mail by its own socket
    # timeouts; let it end before its app is closed.
    for thread in threading.enumerate():
        if thread.name.startswith("smtprelay-publish"):
            thread.join(10)
    for app in apps:
        app.close()


def timed_send() -> tuple[float, int]:
    started = time.monotonic()
    sent = send_mail("S", "B", "from@example.com", ["to@example.com"])
    return time.monotonic() - started, sent


@pytest.mark.parametrize(
    ("scheme", "settings_kwargs", "bound"),
    [
        ("amqp://guest:guest@127.0.0.1:{port}//", {}, 5.0),  # the default bound
        ("redis://127.0.0.1:{port}/0", {"PUBLISH_TIMEOUT": 0.5}, 3.0),
    ],
    ids=["amqp-default-bound", "redis-half-second"],
)
def test_a_hung_broker_delays_send_mail_only_by_the_publish_bound(
    hung_port: int,
    broker_app: Callable[[str], Celery],
    relay_settings: Callable[..., None],
    caplog: pytest.LogCaptureFixture,
    scheme: str,
    settings_kwargs: dict[str, Any],
    bound: float,
) -> None:
    broker_app(scheme.format(port=hung_port))
    relay_settings(PUBLISH_ON_COMMIT=True, **settings_kwargs)
    with caplog.at_level(logging.WARNING, logger="django_smtprelay"):
        elapsed, sent = timed_send()
    assert sent == 1
    assert elapsed < bound, f"send_mail took {elapsed:.1f}s with a hung broker"
    assert Message.objects.get().status == Message.Status.QUEUED
    warning = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning, caplog.text
    assert "PUBLISH_TIMEOUT" in caplog.text
    assert "the sweep will deliver" in caplog.text


@pytest.mark.parametrize(
    "scheme",
    ["amqp://guest:guest@127.0.0.1:{port}//", "redis://127.0.0.1:{port}/0"],
    ids=["amqp", "redis"],
)
def test_a_broker_that_refuses_connections_leaves_the_message_queued(
    refused_port: int,
    broker_app: Callable[[str], Celery],
    relay_settings: Callable[..., None],
    caplog: pytest.LogCaptureFixture,
    scheme: str,
) -> None:
    broker_app(scheme.format(port=refused_port))
    relay_settings(PUBLISH_ON_COMMIT=True)
    with caplog.at_level(logging.WARNING, logger="django_smtprelay"):
        elapsed, sent = timed_send()
    assert sent == 1
    assert elapsed < 5.0, f"send_mail took {elapsed:.1f}s with the broker down"
    assert Message.objects.get().status == Message.Status.QUEUED
    assert "the sweep will deliver" in caplog.text
    assert "Connection refused" in caplog.text or "refused" in caplog.text.lower()


def published(app: Celery, queue_name: str) -> list[list[int]]:
    """The message ids of every delivery task waiting in ``queue_name``."""
    chunks = []
    with app.connection_for_read() as conn:
        queue = conn.SimpleQueue(queue_name)
        while True:
            try:
                message = queue.get(timeout=0.5)
            except queue.Empty:
                break
            chunks.extend(message.decode()[0])
            message.ack()
        queue.close()
    return chunks


def test_a_working_broker_receives_the_delivery_task(
    broker_app: Callable[[str], Celery], relay_settings: Callable[..., None]
) -> None:
    # The in-memory transport: the bounded path still publishes what it should.
    app = broker_app("memory://")
    relay_settings(PUBLISH_ON_COMMIT=True, CELERY_QUEUE="publish-bound-working")
    assert send_mail("S", "B", "from@example.com", ["to@example.com"]) == 1
    assert published(app, "publish-bound-working") == [[Message.objects.get().pk]]


def test_only_messages_due_now_are_published_scheduled_ones_wait_for_the_sweep(
    broker_app: Callable[[str], Celery], relay_settings: Callable[..., None]
) -> None:
    app = broker_app("memory://")
    relay_settings(PUBLISH_ON_COMMIT=True, CELERY_QUEUE="publish-bound-scheduled")
    emails = [EmailMessage(s, "B", "from@example.com", ["to@example.com"]) for s in "ABC"]
    emails[1].smtprelay_send_at = timezone.now() + timedelta(hours=1)
    emails[2].smtprelay_send_at = timezone.now() - timedelta(hours=1)  # overdue: now
    assert get_connection().send_messages(emails) == 3
    ids = dict(Message.objects.values_list("subject", "pk"))
    assert published(app, "publish-bound-scheduled") == [[ids["A"], ids["C"]]]


@pytest.fixture
def counting_redis() -> Iterator[tuple[int, list[int]]]:
    """A TCP proxy to the local Redis that counts the connections made through it."""
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=0.5).close()
    except OSError:
        pytest.skip("needs Redis on 127.0.0.1:6379 (the broker the proxy forwards to)")
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    accepted: list[int] = []
    stop = threading.Event()

    def pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def accept() -> None:
        while not stop.is_set():
            try:
                client, _addr = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            accepted.append(1)
            upstream = socket.create_connection(("127.0.0.1", 6379))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=pipe, args=(a, b), daemon=True).start()

    thread = threading.Thread(target=accept, name="counting-redis", daemon=True)
    thread.start()
    yield listener.getsockname()[1], accepted
    stop.set()
    thread.join(5)
    listener.close()


def test_publishes_reuse_one_broker_connection(
    counting_redis: tuple[int, list[int]],
    broker_app: Callable[[str], Celery],
    relay_settings: Callable[..., None],
) -> None:
    # Connecting costs far more than publishing: a site sending a message per
    # request must not open a broker connection per request.
    port, accepted = counting_redis
    queue = f"publish-bound-reuse-{time.monotonic_ns()}"
    app = broker_app(f"redis://127.0.0.1:{port}/11")
    relay_settings(PUBLISH_ON_COMMIT=True, CELERY_QUEUE=queue)
    assert send_mail("S0", "B", "from@example.com", ["to@example.com"]) == 1
    after_one = len(accepted)  # kombu's Redis transport may open more than one socket
    for i in range(1, 6):
        assert send_mail(f"S{i}", "B", "from@example.com", ["to@example.com"]) == 1
    after_six = len(accepted)
    try:
        pks = sorted(Message.objects.values_list("pk", flat=True))
        assert sorted(published(app, queue)) == [[pk] for pk in pks]
        assert 0 < after_one == after_six, f"{after_one} connections, then {after_six}"
    finally:
        with app.connection_for_write() as conn:
            conn.default_channel.client.delete(queue)
