"""Group commit for webhook posts: the events of the posts that arrive together
are applied in one transaction, and each post is answered only after it commits.

An ESP that posts one event a request (Postmark, Mailgun, Brevo, Amazon SES)
posts many at once, over many connections; a commit costs a disk flush
(SQLite) or a round trip and a WAL flush (PostgreSQL) whatever it holds, so
committing each post on its own bounds the rate by the disk, not the app.

Leader and followers, in the request threads themselves: the first post to
find no transaction under way leads, waits a moment for the posts already
inside the view (only while there are some: a lone post waits for nothing),
and applies every waiting post's events with its own thread's connection,
in one transaction; if a post's events fail, the group is applied again with
each post under a savepoint, so that post rolls back alone and hears a 5xx
while the others commit. Posts that arrive meanwhile wait
for the next leader, who is one of them. The same scheme as the SMTP
listener's :mod:`django_smtprelay.submission.writer`, in threads rather than
asyncio: a WSGI server serves each post in a thread of its own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from django.db import DatabaseError, router, transaction

from ..models import RecipientEvent

logger = logging.getLogger("django_smtprelay.tracking")

#: Posts in one transaction at most: a bound on the transaction and on the
#: time the first post of a group waits.
MAX_POSTS = 100
#: How long a leader waits for the posts still inside the view to bring their
#: events (PostgreSQL's commit_delay, but only while others are on their way).
GATHER_SECONDS = 0.004


@dataclass(eq=False)
class Arrival:
    """A post inside the view; ``handed`` once its events are in (or it left)."""

    handed: bool = False


@dataclass(eq=False)
class Post:
    """One request's work: callables that apply its events, and how it went."""

    work: list[Callable[[], object]]
    done: bool = False
    error: BaseException | None = field(default=None, repr=False)


class GroupCommitter:
    """Applies the posts handed to :meth:`commit`, those waiting together in one transaction."""

    def __init__(self, max_posts: int = MAX_POSTS, gather_seconds: float = GATHER_SECONDS) -> None:
        self.max_posts = max_posts
        self.gather_seconds = gather_seconds
        self.lock = threading.Condition(threading.Lock())  # followers wait on it for their post
        # The leader's own wait, on the same lock: an arrival wakes it alone.
        self.gathering = threading.Condition(self.lock)
        self.pending: list[Post] = []
        self.leading = False
        self.arriving = 0  # posts inside the view that have not yet handed their events

    @contextmanager
    def arrival(self) -> Iterator[Arrival]:
        """Around a post's view: until it hands its events to :meth:`commit` (or
        leaves without), a leader may wait a moment for it."""
        arrival = Arrival()
        with self.lock:
            self.arriving += 1
        try:
            yield arrival
        finally:
            with self.lock:
                self._arrived(arrival)

    def _arrived(self, arrival: Arrival | None) -> None:
        if arrival is not None and not arrival.handed:
            arrival.handed = True
            self.arriving -= 1
            self.gathering.notify()

    def commit(self, work: list[Callable[[], object]], arrival: Arrival | None = None) -> None:
        """Run ``work`` in a committed transaction, shared with the posts waiting now.

        Returns once the transaction holding it has committed; raises what the
        post's own work raised (its savepoint rolled back), or what failed the
        shared transaction. Called inside a transaction already open, applies
        ``work`` alone under a savepoint of it, which commits with the caller's.
        """
        using = router.db_for_write(RecipientEvent)
        if transaction.get_connection(using).in_atomic_block:
            with self.lock:
                self._arrived(arrival)
            if work:
                _apply_alone(work, using)
            return
        post = Post(work)
        with self.lock:
            self._arrived(arrival)
            if not work:
                return
            self.pending.append(post)
            self.gathering.notify()
            while not post.done:
                if not self.leading:
                    self.leading = True
                    self._lead()
                else:
                    self.lock.wait()
        if post.error is not None:
            raise post.error

    def _lead(self) -> None:
        """With the lock held: gather, apply one group without the lock, hand back."""
        deadline = time.monotonic() + self.gather_seconds
        # Wait only for posts on their way, never for posts yet to come.
        while self.arriving > 0 and len(self.pending) < self.max_posts:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self.gathering.wait(remaining)
        group, self.pending = self.pending[: self.max_posts], self.pending[self.max_posts :]
        self.lock.release()
        try:
            _apply(group)
        finally:
            self.lock.acquire()
            for post in group:
                post.done = True
            self.leading = False
            self.lock.notify_all()


def _apply(group: list[Post]) -> None:
    """One transaction for the group's posts; a post without an error is one seen
    to commit. First without a savepoint per post (two statements a post, and
    most groups have no post that fails); if any post fails, that transaction
    is rolled back and the group applied again with one (:func:`_apply_each`).
    Applying an event again is harmless: its insert is idempotent, and so are
    a failure's updates and the suppression.
    """
    using = router.db_for_write(RecipientEvent)
    if not _apply_together(group, using):
        _apply_each(group, using)


class _Failed(Exception):
    """A post's work failed or asked for a rollback: apply the group a savepoint a post."""


def _apply_together(group: list[Post], using: str) -> bool:
    """Every post's work in one transaction, no savepoints; True once committed.
    False (nothing committed, no post answered yet) when anything went wrong."""
    connection = transaction.get_connection(using)
    committed: list[bool] = []
    try:
        with transaction.atomic(using=using):
            transaction.on_commit(partial(committed.append, True), using=using)
            _prepare(group, using)
            for post in group:
                for step in post.work:
                    step()
                if connection.needs_rollback or connection.closed_in_transaction:
                    raise _Failed
    except Exception:
        return False  # what failed fails again under its post's savepoint, and is told there
    except BaseException as exc:
        for post in group:
            post.error = exc
        raise
    return bool(committed)


def _apply_each(group: list[Post], using: str) -> None:
    """One transaction; a savepoint per post, so that a post whose work fails rolls
    back alone.

    Django's ``atomic()`` rolls back without raising when the connection was
    lost inside it or a savepoint could not be rolled back (or a post's work
    asked for a rollback): a post is answered 200 only if the on-commit hook
    registered in its own savepoint ran, which Django drops with the savepoint
    or the transaction. Every other post hears an error, and the ESP posts it
    again.
    """
    connection = transaction.get_connection(using)
    committed: set[int] = set()
    try:
        with transaction.atomic(using=using):
            _prepare(group, using)
            for index, post in enumerate(group):
                try:
                    with transaction.atomic(using=using):
                        # First of this savepoint's hooks: it runs before the work's own.
                        transaction.on_commit(partial(committed.add, index), using=using)
                        for step in post.work:
                            step()
                except Exception as exc:  # this post alone: the ESP posts it again
                    post.error = exc
                if connection.needs_rollback or connection.closed_in_transaction:
                    # The transaction is lost (a savepoint that would not roll back,
                    # a dropped connection): no later post can commit in it.
                    raise DatabaseError("the connection cannot go on with the transaction")
    except BaseException as exc:
        for post in group:
            if post.error is None:
                post.error = exc
        if isinstance(exc, DatabaseError):
            logger.warning("A group of %d webhook posts failed to commit: %s", len(group), exc)
        if not isinstance(exc, Exception):
            raise
    lost = [
        post for index, post in enumerate(group) if index not in committed and post.error is None
    ]
    if lost:
        logger.warning(
            "%d of a group of %d webhook posts were rolled back without an error",
            len(lost),
            len(group),
        )
        for post in lost:
            post.error = DatabaseError("the transaction holding the post's events did not commit")


def _prepare(group: list[Post], using: str) -> None:
    """Let the group's work read ahead what it needs, in a few statements for the
    whole group (``prepare_group`` of a step's class: :class:`.apply.Applying`).
    Under a savepoint: a read that fails leaves each step to read for itself."""
    batches: dict[Callable[[list[Any]], None], list[Any]] = {}
    for post in group:
        for step in post.work:
            prepare = getattr(type(step), "prepare_group", None)
            if prepare is not None:
                batches.setdefault(prepare, []).append(step)
    for prepare, steps in batches.items():
        try:
            with transaction.atomic(using=using):
                prepare(steps)
        except DatabaseError as exc:
            logger.info("Reading ahead for a group of webhook posts failed: %s", exc)


def _apply_alone(work: list[Callable[[], object]], using: str) -> None:
    """Inside a transaction already open on this thread (``ATOMIC_REQUESTS``, a
    caller's ``atomic()``): the post's work under a savepoint of it, never in a
    group. A leader's transaction would then be a savepoint of its own request's,
    committed only when that request ends, after its followers have heard 200."""
    with transaction.atomic(using=using):
        for step in work:
            step()


#: The process's committer: every route's tracking webhook shares it.
committer = GroupCommitter()
