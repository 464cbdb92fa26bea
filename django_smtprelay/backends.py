"""``QueuedEmailBackend``: store every message in the database and return at once."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from datetime import timedelta
from functools import cache
from typing import Any

from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.message import EmailMessage
from django.db import router, transaction
from django.db.models import Model
from django.utils import timezone

from . import signals
from .conf import app_settings
from .envelope import PreparedMessage, prepare, shown
from .exceptions import InvalidMessageError
from .models import Message, Recipient, store

logger = logging.getLogger("django_smtprelay.queue")

_PRIORITIES = {p.label.lower(): p.value for p in Message.Priority}


def _priority(value: str, subject: str) -> int:
    if not value:
        return Message.Priority.NORMAL
    try:
        return _PRIORITIES[value.strip().lower()]
    except KeyError:
        raise InvalidMessageError(
            f"Message {shown(subject)} has priority {shown(value)}; "
            f"use one of {', '.join(_PRIORITIES)}."
        ) from None


@cache
def _max_length(model: type[Model], column: str) -> int | None:
    return model._meta.get_field(column).max_length


def check_storable(p: PreparedMessage) -> None:
    """Refuse a value that its column cannot hold, before anything is written.

    PostgreSQL raises ``DataError`` for a value longer than its column and
    refuses NUL in text, which would lose the valid messages of the same call.
    """
    fields = (
        (Message, "from_email", "envelope sender", p.from_email),
        (Message, "sender_domain", "envelope sender's domain", p.from_email.rpartition("@")[2]),
        (Message, "from_domain", "From header's domain", p.from_domain),
        (Message, "subject", "subject", p.subject),
        (Message, "message_id", "Message-ID", p.message_id),
        (Message, "route_hint", "route hint", p.route_hint),
        *((Recipient, "address", "recipient", address) for address in p.recipients),
    )
    for model, column, label, value in fields:
        limit = _max_length(model, column)
        if "\x00" in value:
            raise InvalidMessageError(
                f"Message {shown(p.subject)}: its {label} {shown(value)} contains a NUL "
                "character, which cannot be stored or sent; remove it."
            )
        if limit is not None and len(value) > limit:
            raise InvalidMessageError(
                f"Message {shown(p.subject)}: its {label} {shown(value, count=False)} is "
                f"{len(value)} characters long; at most {limit} can be stored. Shorten it."
            )


class QueuedEmailBackend(BaseEmailBackend):
    """A Django email backend that queues messages for relay delivery.

    All messages of one ``send_messages()`` call are validated first, then
    stored in one transaction with bulk inserts; the delivery task is published
    only when that transaction commits.
    """

    def send_messages(self, email_messages: Iterable[EmailMessage]) -> int:
        messages = list(email_messages)  # Django's own tests pass an iterator
        if not messages:
            return 0
        if len(messages) < _PAUSE_COLLECTOR_FROM:
            return self._send(messages)
        with _collector_paused():
            return self._send(messages)

    def _send(self, email_messages: Sequence[EmailMessage]) -> int:
        prepared: list[tuple[PreparedMessage, int]] = []
        for email_message in email_messages:
            try:
                item = prepare(email_message)
                check_storable(item)
                prepared.append((item, _priority(item.priority, item.subject)))
            except InvalidMessageError:
                if not self.fail_silently:
                    raise
                logger.warning("Message not queued", exc_info=True)
        if not prepared:
            return 0
        queue(prepared)
        return len(prepared)


# A batch from this size on is prepared and stored with the cyclic garbage
# collector paused (see _collector_paused).
_PAUSE_COLLECTOR_FROM = 100


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a batch is prepared and stored.

    A batch allocates objects that all live until it is stored (rows, bytes,
    envelopes), and the collector, counting allocations, walks the whole heap
    again and again for nothing: a quarter of the time of 3,000 messages
    (measured; bench/README.md). Reference counting still frees everything
    at once; the collector runs again when the batch is stored, or as it
    was if another thread paused it first.
    """
    global _pauses, _paused_here
    with _pause_lock:
        if _pauses == 0:
            _paused_here = gc.isenabled()
            gc.disable()
        _pauses += 1
    try:
        yield
    finally:
        # The last batch of overlapping ones (several request threads) turns
        # it back on, and only if it was on before the first.
        with _pause_lock:
            _pauses -= 1
            if _pauses == 0 and _paused_here:
                gc.enable()


_pause_lock = threading.Lock()
_pauses = 0  # batches running with the collector paused
_paused_here = False  # whether the first of them found it on


def queue(prepared: list[tuple[PreparedMessage, int]]) -> list[int]:
    """Store prepared messages in one transaction; publish delivery on commit."""
    now = timezone.now()
    expires = now + app_settings.max_lifetime
    rows = []  # in store.MESSAGE_COLUMNS order
    due = []  # per row: deliver now (else at its send_at, through the sweep)
    for p, priority in prepared:
        next_at = max(now, p.send_at) if p.send_at else now
        rows.append(
            (
                Message.Status.QUEUED.value,
                priority,
                p.from_email,
                p.from_email.rpartition("@")[2].lower(),
                p.from_domain,
                p.subject,
                p.message_id,
                len(p.data),
                p.route_hint,
                "",
                now,
                next_at,
                expires if not p.send_at else max(expires, p.send_at + (expires - now)),
                p.deliver_by,
                0,
                "",
                False,
                p.submission_account_id,
            )
        )
        due.append(next_at <= now)
    db = router.db_for_write(Message)
    with store.in_one_transaction(db, len(rows)):
        ids = store.store(
            db, rows, [p.data for p, _prio in prepared], [p.recipients for p, _prio in prepared]
        )
        now_ids = [pk for pk, is_due in zip(ids, due, strict=True) if is_due]
        # Outside a transaction (one statement, committed already) these run now.
        # Robust: the messages are committed once these run, so an error in
        # them is logged and must not reach the caller as a failed store
        # (a client told so sends the message again).
        if app_settings.publish_on_commit and now_ids:
            transaction.on_commit(lambda: publish(now_ids), using=db, robust=True)
        transaction.on_commit(lambda: _announce_queued(ids), using=db, robust=True)
    logger.debug("Queued %d message(s)", len(ids))
    return ids


def _announce_queued(ids: list[int]) -> None:
    """Send ``message_queued``; a receiver that raises is logged, the others still run."""
    for receiver, result in signals.message_queued.send_robust(sender=Message, message_ids=ids):
        if isinstance(result, Exception):
            logger.error(
                "A message_queued receiver %r failed for %d committed message(s)",
                receiver,
                len(ids),
                exc_info=result,
            )


def publish(message_ids: list[int], *, countdown: timedelta | None = None) -> None:
    """Publish delivery tasks for ``message_ids``, bounded by ``PUBLISH_TIMEOUT``.

    The messages are already committed: when the broker is down, hung or slow,
    this logs a warning and returns, and the periodic sweep delivers them. The
    bound covers connecting as well as publishing, so a broker that accepts
    connections and never answers cannot hold up the request that sent mail.
    """
    from .tasks import deliver

    # Resolved here: the current Celery app is per thread, and the publisher
    # thread below has none of its own.
    task = deliver._get_current_object()
    options: dict[str, Any] = {"retry": False}
    if app_settings.celery_queue:
        options["queue"] = app_settings.celery_queue
    if countdown:
        options["countdown"] = countdown.total_seconds()
    size = app_settings.batch_size
    chunks = [message_ids[i : i + size] for i in range(0, len(message_ids), size)]
    timeout = app_settings.publish_timeout
    if task.app.conf.task_always_eager:  # runs the task here; there is no broker to wait for
        for chunk in chunks:
            task.apply_async(args=(chunk,), **options)
        return
    failure: list[BaseException] = []
    # A thread with a deadline, because kombu's own timeouts apply per step
    # (connect, handshake, each socket read) and add up; the publisher's
    # connection has them too, so a timed-out thread still ends soon after.
    thread = threading.Thread(
        target=_publish_chunks,
        args=(task, chunks, options, timeout, failure),
        name="smtprelay-publish",
        daemon=True,
    )
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        logger.warning(
            "Publishing delivery of %d queued message(s) took longer than PUBLISH_TIMEOUT "
            "(%.1fs); they stay queued and the sweep will deliver them",
            len(message_ids),
            timeout,
        )
    elif failure:
        logger.warning(
            "Could not publish delivery of %d queued message(s) (%s: %s); they stay queued "
            "and the sweep will deliver them",
            len(message_ids),
            type(failure[0]).__name__,
            failure[0],
            exc_info=failure[0],
        )


class _Publisher:
    """The process's publishing connection, kept open between calls.

    Opening a broker connection costs far more than a publish (68 ms against
    2 ms to a local Redis, measured), and a site that sends a message per
    request paid it on every one. One publish at a time uses it; a publish
    that finds it busy (another thread's, or one hung on a dead broker)
    opens a connection of its own, as every publish did before. A failure
    drops it, so the next call connects afresh.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.connection: Any = None
        self.key: tuple[int, Any, float] | None = None

    def kept(self, app: Any, timeout: float) -> bool:
        """Whether a connection is kept for this app and bound in this process."""
        key = self.key
        return key is not None and key[0] == os.getpid() and key[1] is app and key[2] == timeout

    def get(self, app: Any, timeout: float) -> Any:
        if not self.kept(app, timeout):  # another app or bound, or a forked child's copy
            self.connection, self.key = _connection(app, timeout), (os.getpid(), app, timeout)
        return self.connection

    def drop(self) -> None:
        connection, self.connection, self.key = self.connection, None, None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.release()


_publisher = _Publisher()


# The transports that take socket timeouts as transport options. Others refuse
# them: kombu's SQLAlchemy transport hands its options to create_engine(),
# which raised TypeError, so a process whose first broker connection was this
# one (the listener, a fresh web process) never published.
_SOCKET_TIMEOUTS = {
    "redis": ("socket_connect_timeout", "socket_timeout"),
    "amqp": ("read_timeout", "write_timeout"),  # py-amqp
}


def _connection(app: Any, timeout: float) -> Any:
    """A broker connection whose every socket step times out."""
    # max_retries 0: a refused connection fails now, not after retries.
    connection = app.connection_for_write(
        connect_timeout=timeout, transport_options={"max_retries": 0}
    )
    for option in _SOCKET_TIMEOUTS.get(connection.transport.driver_type, ()):
        connection.transport_options[option] = timeout
    return connection


def _publish_chunks(
    task: Any,
    chunks: list[list[int]],
    options: dict[str, Any],
    timeout: float,
    failure: list[BaseException],
) -> None:
    """Publish on the process's kept connection, or on one of its own."""
    if _publisher.lock.acquire(blocking=False):
        try:
            reused = _publisher.kept(task.app, timeout)
            try:
                _send(task, chunks, options, _publisher.get(task.app, timeout))
                return
            except Exception as exc:
                _publisher.drop()
                if not reused:  # a fresh connection failed: the broker is down
                    failure.append(exc)
                    return
            # The kept connection had gone stale (a broker restart): once more, afresh.
            try:
                _send(task, chunks, options, _publisher.get(task.app, timeout))
            except Exception as exc:
                _publisher.drop()
                failure.append(exc)
        finally:
            _publisher.lock.release()
        return
    try:
        with _connection(task.app, timeout) as connection:
            _send(task, chunks, options, connection)
    except Exception as exc:  # kombu raises many kinds; the sweep is the safety net
        failure.append(exc)


def _send(task: Any, chunks: list[list[int]], options: dict[str, Any], connection: Any) -> None:
    for chunk in chunks:
        task.apply_async(args=(chunk,), connection=connection, **options)
