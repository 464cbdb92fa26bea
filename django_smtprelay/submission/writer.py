"""Where the listener meets the database: threads for the ORM, and one writer
that commits the messages of every connection waiting at that moment in one
transaction (group commit).

A commit costs a disk flush (SQLite) or a round trip and a WAL flush
(PostgreSQL) whatever it holds; committing each message on its own made the
listener a tenth as fast as a server that keeps nothing, measured with ten
smtp-source sessions. Each client still hears its 250 only after the
transaction holding its message has committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

from django.db import DatabaseError, connections, router

from ..backends import check_storable, queue
from ..exceptions import InvalidMessageError
from ..models import Message
from . import intake

T = TypeVar("T")
logger = logging.getLogger("django_smtprelay.submission")
# Messages in one transaction at most: a bound on the statement and on the
# time the first client of a batch waits.
MAX_BATCH = 100
# How long a batch waits for the other connections in the middle of a
# transaction to reach the final dot, so they share its commit (PostgreSQL's
# commit_delay, but only while others are on their way).
GATHER_SECONDS = 0.004


def _in_thread(fn: Callable[..., T], args: tuple) -> T:
    """Run ``fn``; a connection that failed is closed, so the next call opens a new one.

    Connections stay open between calls (as a worker's do): the listener
    would otherwise connect once per message.
    """
    try:
        return fn(*args)
    except DatabaseError:
        for conn in connections.all(initialized_only=True):
            with contextlib.suppress(Exception):
                conn.close()
        raise


class Threads:
    """The threads that run the ORM and cache calls, each with its own connection."""

    def __init__(self, count: int, name: str = "smtprelay-db") -> None:
        self.count = count
        self.executor = ThreadPoolExecutor(max_workers=count, thread_name_prefix=name)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, partial(_in_thread, fn, args))

    def shutdown(self) -> None:
        """Close every thread's database connections, then stop the threads."""
        barrier = threading.Barrier(self.count)

        def close() -> None:
            connections.close_all()
            # Held until each thread has taken one: every thread closes its own.
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait(timeout=5)

        for _ in range(self.count):
            self.executor.submit(close)
        self.executor.shutdown(wait=True)


class GroupWriter:
    """Queues the messages handed to :meth:`store`: those waiting together go
    in one transaction, and two transactions may be under way at once.

    Two, because with one the clients fall into step: all of them wait for
    the commit, then all send their next message while the database idles.
    With two, one batch commits while the next one gathers and prepares its
    rows (on SQLite, whose writers take turns, the second then waits for the
    first on a lock here rather than in SQLite's busy loop, which sleeps in
    steps of milliseconds).
    """

    IN_FLIGHT = 2

    def __init__(self, threads: Threads, after: Callable[[list[intake.Transaction]], None]) -> None:
        self.threads = threads
        self.after = after  # runs in the thread after each commit (accounts' use)
        self.pending: list[tuple[intake.Transaction, asyncio.Future[int]]] = []
        self.running: asyncio.Task[None] | None = None
        self.arrived = asyncio.Event()
        self.slots: asyncio.Semaphore | None = None
        self.writing = 0  # messages in the transactions under way
        self.tasks: set[asyncio.Task[None]] = set()
        self.turns = threading.Lock()  # SQLite's writers, one after the other
        # The connections in the middle of a transaction (set by the listener):
        # the messages that may join a batch if it waits a moment.
        self.in_transaction: Callable[[], int] = lambda: 0

    async def store(self, transaction: intake.Transaction) -> int:
        """The message's id once committed; raises InvalidMessageError or DatabaseError."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.pending.append((transaction, future))
        self.arrived.set()
        if self.running is None or self.running.done():
            self.running = asyncio.create_task(self._drain())
        return await future

    async def _gather(self) -> None:
        """Wait (briefly) until every connection in a transaction, but those
        whose message is being written, has its message here."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + GATHER_SECONDS
        while len(self.pending) < min(self.in_transaction() - self.writing, MAX_BATCH):
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self.arrived.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), remaining)

    async def _drain(self) -> None:
        if self.slots is None:
            self.slots = asyncio.Semaphore(self.IN_FLIGHT)
        while self.pending:
            await self.slots.acquire()
            await self._gather()
            batch, self.pending = self.pending[:MAX_BATCH], self.pending[MAX_BATCH:]
            self.writing += len(batch)
            task = asyncio.create_task(self._write_batch(batch))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _write_batch(
        self, batch: list[tuple[intake.Transaction, asyncio.Future[int]]]
    ) -> None:
        try:
            results = await self.threads.run(self._write, [t for t, _f in batch])
        except BaseException as exc:  # the whole transaction failed: each client hears it
            for _t, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        finally:
            self.writing -= len(batch)
            assert self.slots is not None
            self.slots.release()
        for (_t, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    def _write(self, transactions: list[intake.Transaction]) -> list[int | Exception]:
        """In a thread: one transaction for every storable message of the batch."""
        results: list[int | Exception] = []
        storable = []
        for t in transactions:
            p = intake.prepared(t)
            try:
                check_storable(p)
            except InvalidMessageError as exc:
                results.append(exc)
                continue
            results.append(len(storable))  # its place among the stored, replaced below
            storable.append((t, p))
        ids: list[int] = []
        if storable:
            turns = self.turns if _takes_turns() else contextlib.nullcontext()
            with turns:
                ids = queue([(p, Message.Priority.NORMAL) for _t, p in storable])
        try:
            self.after([t for t, _p in storable])
        except Exception:
            # Committed already: each client must hear its 250 (told otherwise
            # it sends the message again); only the bookkeeping is lost.
            logger.exception("Bookkeeping after storing %d message(s) failed", len(storable))
        return [r if isinstance(r, Exception) else ids[r] for r in results]


def _takes_turns() -> bool:
    """Whether the queue's database lets one writer at a time (SQLite)."""
    return connections[router.db_for_write(Message)].vendor == "sqlite"
