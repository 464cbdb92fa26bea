"""Work done while an HTTP request waits for its answer, on the same thread.

An ESP route records the previous message's result and prepares the next
message's request while the ESP works on this one. Handing the request to
another thread for that costs thread wake-ups and GIL hand-offs, about as
much as the work itself when the ESP answers at once. Here the work runs on
the sending thread instead, at the one moment it has nothing else to do: the
request has been written to the socket and the answer is about to be read.

:func:`hook_answers` gives a ``requests`` session's adapters connection
classes whose ``getresponse`` first runs the work set with
:func:`while_waiting` (once, on the thread that set it). Nothing else of the
session changes: its adapters, retries and pool sizes stay as they were. A
request that never reaches ``getresponse`` (no connection could be made) runs
nothing; the caller then does the work itself afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any

_WORK: ContextVar[Callable[[], None] | None] = ContextVar("smtprelay_while_waiting", default=None)


def _run_waiting_work() -> None:
    work = _WORK.get()
    if work is not None:
        _WORK.set(None)  # once: a retried request does not run it again
        work()


@contextlib.contextmanager
def while_waiting(work: Callable[[], None] | None) -> Iterator[None]:
    """Run ``work`` (which must not raise) once the request made inside this
    block has been sent and its answer is awaited."""
    token = _WORK.set(work)
    try:
        yield
    finally:
        _WORK.reset(token)


_POOLS: dict[str, type] | None = None


def _pool_classes() -> dict[str, type]:
    """Connection pools whose connections run the waiting work (made once)."""
    global _POOLS
    if _POOLS is None:
        from urllib3.connection import HTTPConnection, HTTPSConnection
        from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

        class WaitingHTTPConnection(HTTPConnection):
            def getresponse(self, *args: Any, **kwargs: Any) -> Any:
                _run_waiting_work()
                return super().getresponse(*args, **kwargs)

        class WaitingHTTPSConnection(HTTPSConnection):
            def getresponse(self, *args: Any, **kwargs: Any) -> Any:
                _run_waiting_work()
                return super().getresponse(*args, **kwargs)

        class WaitingHTTPPool(HTTPConnectionPool):
            ConnectionCls = WaitingHTTPConnection

        class WaitingHTTPSPool(HTTPSConnectionPool):
            ConnectionCls = WaitingHTTPSConnection

        _POOLS = {"http": WaitingHTTPPool, "https": WaitingHTTPSPool}
    return _POOLS


def hook_answers(session: Any) -> bool:
    """Make ``session`` (a ``requests.Session``) run the waiting work of its
    requests; False when it cannot (an adapter of another kind, a pool manager
    without the usual pool classes), and then nothing is changed."""
    from requests.adapters import HTTPAdapter
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    adapters = list(getattr(session, "adapters", {}).values())
    managers = [getattr(a, "poolmanager", None) for a in adapters]
    usual = {"http": HTTPConnectionPool, "https": HTTPSConnectionPool}
    if not adapters or not all(
        isinstance(a, HTTPAdapter)
        and getattr(m, "pool_classes_by_scheme", None) == usual
        and not getattr(m, "pools", None)  # no connection made yet
        for a, m in zip(adapters, managers, strict=True)
    ):
        return False
    for manager in managers:
        # The manager's own mapping (the module's stays as it was).
        manager.pool_classes_by_scheme = dict(_pool_classes())
    return True
