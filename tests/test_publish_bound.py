"""Publishing on commit is bounded: a broker that is down or hung never holds up send_mail."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from celery import Celery, current_app
from django.core.mail import EmailMessage, get_connection, send_mail, send_mass_mail
from django.utils import timezone

from django_smtprelay import backends
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


def queue_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "django_smtprelay.queue" and r.levelno == logging.WARNING
    ]


@contextlib.contextmanager
def publisher_busy(busy: bool = True) -> Iterator[None]:
    """Another thread's publish holds the process's kept connection meanwhile."""
    if not busy:
        yield
        return
    assert backends._publisher.lock.acquire(timeout=10)
    try:
        yield
    finally:
        backends._publisher.lock.release()


@contextlib.contextmanager
def publish_threads_seen() -> Iterator[list[threading.Thread]]:
    """The threads named smtprelay-publish that ran meanwhile (looked for every 10 ms)."""
    seen: list[threading.Thread] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.01):
            for thread in threading.enumerate():
                if thread.name == "smtprelay-publish" and thread not in seen:
                    seen.append(thread)

    watcher = threading.Thread(target=watch, name="publish-watcher", daemon=True)
    watcher.start()
    try:
        yield seen
    finally:
        stop.set()
        watcher.join(5)


# A publish through the kept connection, and one that opens its own because
# another thread's publish holds the kept one; to RabbitMQ and to Redis.
each_connection = pytest.mark.parametrize(
    "busy", [False, True], ids=["kept-connection", "own-connection"]
)
each_broker = pytest.mark.parametrize(
    "scheme",
    ["amqp://guest:guest@127.0.0.1:{port}//", "redis://127.0.0.1:{port}/0"],
    ids=["amqp", "redis"],
)


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
    timeout = settings_kwargs.get("PUBLISH_TIMEOUT", 2.0)  # the default
    # Which of the two bounds fires first is a race on a busy machine: the wait
    # for the publishing thread, or the socket's own timeout inside it.
    assert queue_warnings(caplog) in (
        [
            f"Publishing delivery of 1 queued message(s) took longer than PUBLISH_TIMEOUT "
            f"({timeout:.1f}s); they stay queued and the sweep will deliver them"
        ],
        [
            "Could not publish delivery of 1 queued message(s) (OperationalError: timed out); "
            "they stay queued and the sweep will deliver them"
        ],
    )


@each_connection
@each_broker
def test_a_broker_that_refuses_connections_leaves_the_message_queued(
    refused_port: int,
    broker_app: Callable[[str], Celery],
    relay_settings: Callable[..., None],
    caplog: pytest.LogCaptureFixture,
    scheme: str,
    busy: bool,
) -> None:
    # busy: another thread's publish holds the kept connection; this one opens its own.
    broker_app(scheme.format(port=refused_port))
    relay_settings(PUBLISH_ON_COMMIT=True)
    with publisher_busy(busy), caplog.at_level(logging.WARNING, logger="django_smtprelay"):
        elapsed, sent = timed_send()
    assert sent == 1
    assert elapsed < 5.0, f"send_mail took {elapsed:.1f}s with the broker down"
    assert Message.objects.get().status == Message.Status.QUEUED
    assert "refused" in caplog.text.lower()
    assert_publish_failure_reported(caplog)


def assert_publish_failure_reported(caplog: pytest.LogCaptureFixture, count: int = 1) -> None:
    """One warning names the error (its type and text) and carries its traceback."""
    [record] = [
        r
        for r in caplog.records
        if r.name == "django_smtprelay.queue" and r.levelno >= logging.WARNING
    ]
    assert record.levelno == logging.WARNING
    error = record.exc_info[1] if record.exc_info else None
    assert isinstance(error, Exception), "the warning carries the error's traceback"
    assert record.getMessage() == (
        f"Could not publish delivery of {count} queued message(s) "
        f"({type(error).__name__}: {error}); they stay queued and the sweep will deliver them"
    )


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


@pytest.mark.parametrize("busy", [False, True], ids=["kept-connection", "own-connection"])
def test_a_working_broker_receives_the_delivery_task(
    broker_app: Callable[[str], Celery],
    relay_settings: Callable[..., None],
    caplog: pytest.LogCaptureFixture,
    busy: bool,
) -> None:
    # The in-memory transport: the bounded path still publishes what it should.
    app = broker_app("memory://")
    relay_settings(PUBLISH_ON_COMMIT=True, CELERY_QUEUE="publish-bound-working")
    with publisher_busy(busy), caplog.at_level(logging.WARNING, logger="django_smtprelay"):
        assert send_mail("S", "B", "from@example.com", ["to@example.com"]) == 1
        # Published before send_mail returned, even while the kept connection is busy.
        assert published(app, "publish-bound-working") == [[Message.objects.get().pk]]
    assert queue_warnings(caplog) == []


def test_without_publish_on_commit_nothing_is_published(
    broker_app: Callable[[str], Celery], relay_settings: Callable[..., None]
) -> None:
    app = broker_app("memory://")
    relay_settings(PUBLISH_ON_COMMIT=False, CELERY_QUEUE="publish-bound-off")
    assert send_mail("S", "B", "from@example.com", ["to@example.com"]) == 1
    assert published(app, "publish-bound-off") == []


def test_a_process_first_publish_connects_and_later_ones_reuse_the_connection(
    broker_app: Callable[[str], Celery],
    relay_settings: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A process that has not published yet (a fresh web process).
    monkeypatch.setattr(backends, "_publisher", backends._Publisher())
    app = broker_app("memory://")
    relay_settings(PUBLISH_ON_COMMIT=True, CELERY_QUEUE="publish-bound-first")
    assert send_mail("S1", "B", "from@example.com", ["to@example.com"]) == 1
    kept = backends._publisher.connection
    assert kept is not None
    assert send_mail("S2", "B", "from@example.com", ["to@example.com"]) == 1
    assert backends._publisher.connection is kept
    assert sorted(published(app, "publish-bound-first")) == [
        [pk] for pk in sorted(Message.objects.values_list("pk", flat=True))
    ]


def test_a_countdown_reaches_the_task_and_ids_are_split_into_tasks_of_batch_size(
    broker_app: Callable[[str], Celery], relay_settings: Callable[..., None]
) -> None:
    app = broker_app("memory://")
    relay_settings(CELERY_QUEUE="publish-bound-countdown", BATCH_SIZE=2)
    before = timezone.now()
    backends.publish([11, 12, 13], countdown=timedelta(seconds=90))
    after = timezone.now()
    tasks = published_tasks(app, "publish-bound-countdown")
    assert [args for args, _eta in tasks] == [[11, 12], [13]]
    for _args, eta in tasks:
        assert before + timedelta(seconds=90) <= eta <= after + timedelta(seconds=90)
    backends.publish([14])
    assert published_tasks(app, "publish-bound-countdown") == [([14], None)]


def published_tasks(app: Celery, queue_name: str) -> list[tuple[list[int], datetime | None]]:
    """Each delivery task waiting in ``queue_name``: its message ids and its ETA."""
    tasks = []
    with app.connection_for_read() as conn:
        queue = conn.SimpleQueue(queue_name)
        while True:
            try:
                message = queue.get(timeout=0.5)
            except queue.Empty:
                break
            eta = message.headers.get("eta")
            tasks.append((message.decode()[0][0], datetime.fromisoformat(eta) if eta else None))
            message.ack()
        queue.close()
    return tasks


def test_with_an_eager_celery_app_the_messages_are_delivered_before_send_mail_returns(
    smtp_server: Callable[..., Any],
    make_route: Callable[..., Any],
    broker_app: Callable[[str], Celery],
    relay_settings: Callable[..., None],
) -> None:
    server = smtp_server()
    make_route(server)
    app = broker_app("memory://")
    app.conf.task_always_eager = True
    relay_settings(PUBLISH_ON_COMMIT=True, BATCH_SIZE=2)
    datatuple = [(f"S{i}", "B", "from@example.com", [f"to{i}@example.com"]) for i in range(3)]
    assert send_mass_mail(datatuple) == 3
    assert set(Message.objects.values_list("status", flat=True)) == {Message.Status.SENT}
    assert sorted(m.rcpt_tos for m in server.messages) == [
        (f"to{i}@example.com",) for i in range(3)
    ]


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


@each_connection
@each_broker
def test_a_publish_to_a_hung_broker_ends_on_its_own_timeouts_in_a_daemon_thread(
    hung_port: int,
    broker_app: Callable[[str], Celery],
    relay_settings: Callable[..., None],
    scheme: str,
    busy: bool,
) -> None:
    # The thread left behind must end soon after the bound (each connect and
    # socket step times out), and never keep the process from exiting.
    broker_app(scheme.format(port=hung_port))
    relay_settings(PUBLISH_ON_COMMIT=True, PUBLISH_TIMEOUT=0.5)
    with publisher_busy(busy), publish_threads_seen() as threads:
        assert send_mail("S", "B", "from@example.com", ["to@example.com"]) == 1
        assert threads, "the publish went on in a thread named smtprelay-publish"
        assert all(t.daemon for t in threads)
        for thread in threads:
            thread.join(3.0)
        assert not any(t.is_alive() for t in threads), "still waiting on the hung broker"


class RedisProxy:
    """A TCP proxy to the local Redis that can act out a broker restart or outage."""

    def __init__(self) -> None:
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.accepted = 0
        self.live = 0  # client connections open now
        self.refuse = 0  # connections still to close at once, as a broker not up yet
        self.open: list[socket.socket] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, name="redis-proxy", daemon=True)
        self.thread.start()

    def _pipe(self, src: socket.socket, dst: socket.socket, from_client: bool) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            if from_client:
                self.live -= 1

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                client, _addr = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            if self.refuse:
                self.refuse -= 1
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", 6379))
            self.open += [client, upstream]
            self.live += 1
            for a, b, from_client in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pipe, args=(a, b, from_client), daemon=True).start()

    def restart(self, down_for: int = 1) -> None:
        """Cut every connection; the next ``down_for`` connections are closed at once."""
        self.refuse = down_for
        for s in self.open:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        self.open = []
        time.sleep(0.2)  # the cuts reach the clients

    def close(self) -> None:
        self.restart(0)
        self.stop.set()
        self.thread.join(5)
        self.listener.close()


@pytest.fixture
def redis_proxy() -> Iterator[RedisProxy]:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=0.5).close()
    except OSError:
        pytest.skip("needs Redis on 127.0.0.1:6379 (the broker the proxy forwards to)")
    proxy = RedisProxy()
    yield proxy
    proxy.close()


@pytest.fixture
def redis_queue(
    redis_proxy: RedisProxy,
    broker_app: Callable[[str], Celery],
    relay_settings: Callable[..., None],
) -> Iterator[tuple[Celery, str]]:
    """A Celery app on Redis db 15 through the proxy, and a queue of the test's own."""
    queue = f"publish-bound-{time.monotonic_ns()}"
    app = broker_app(f"redis://127.0.0.1:{redis_proxy.port}/15")
    relay_settings(PUBLISH_ON_COMMIT=True, CELERY_QUEUE=queue, PUBLISH_TIMEOUT=2.0)
    yield app, queue
    redis_proxy.refuse = 0
    with app.connection_for_write() as conn:
        conn.default_channel.client.delete(queue)


def test_a_broker_restart_drops_the_kept_connection_and_the_publish_reconnects(
    redis_proxy: RedisProxy,
    redis_queue: tuple[Celery, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    app, queue = redis_queue
    with caplog.at_level(logging.WARNING, logger="django_smtprelay"):
        assert send_mail("Before", "B", "from@example.com", ["to@example.com"]) == 1
        redis_proxy.restart()  # the kept connection fails: reconnect once, at once
        assert send_mail("After", "B", "from@example.com", ["to@example.com"]) == 1
        reconnected = redis_proxy.accepted
        assert send_mail("Later", "B", "from@example.com", ["to@example.com"]) == 1
    assert redis_proxy.accepted == reconnected, "the new connection is the one kept"
    assert queue_warnings(caplog) == []
    pks = dict(Message.objects.values_list("subject", "pk"))
    assert published(app, queue) == [[pks["Before"]], [pks["After"]], [pks["Later"]]]


def test_a_broker_gone_since_the_last_publish_is_reported_with_its_error(
    redis_proxy: RedisProxy,
    redis_queue: tuple[Celery, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    app, queue = redis_queue
    assert send_mail("Before", "B", "from@example.com", ["to@example.com"]) == 1
    redis_proxy.restart(down_for=1000)
    with caplog.at_level(logging.WARNING, logger="django_smtprelay"):
        assert send_mail("During", "B", "from@example.com", ["to@example.com"]) == 1
    assert_publish_failure_reported(caplog)
    redis_proxy.refuse = 0  # back up
    assert published(app, queue) == [[Message.objects.get(subject="Before").pk]]
    assert Message.objects.get(subject="During").status == Message.Status.QUEUED


def test_a_failed_publish_is_not_retried_the_sweep_delivers_instead(
    redis_proxy: RedisProxy,
    redis_queue: tuple[Celery, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Celery retries a failed publish by default, reconnecting each time; the
    # publish thread tries once and leaves the rest to the sweep.
    redis_proxy.refuse = 1000
    with caplog.at_level(logging.WARNING, logger="django_smtprelay"):
        assert send_mail("S", "B", "from@example.com", ["to@example.com"]) == 1
    assert_publish_failure_reported(caplog)
    assert redis_proxy.accepted == 1


def test_a_connection_that_failed_a_publish_is_closed_not_left_open(
    redis_proxy: RedisProxy,
    redis_queue: tuple[Celery, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    app, queue = redis_queue
    # The queue's key holds a string: Redis answers the publish with an error
    # on a connection that is otherwise sound.
    with app.connection_for_write() as conn:
        conn.default_channel.client.set(queue, "not a list")
    assert wait_for(lambda: redis_proxy.live == 0)
    with caplog.at_level(logging.WARNING, logger="django_smtprelay"):
        assert send_mail("S", "B", "from@example.com", ["to@example.com"]) == 1
    assert_publish_failure_reported(caplog)
    assert "WRONGTYPE" in caplog.text
    assert wait_for(lambda: redis_proxy.live == 0), f"{redis_proxy.live} connection(s) left open"


def wait_for(predicate: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.05)
    return predicate()
