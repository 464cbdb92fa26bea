"""Real SMTP servers for the test suite, and the pytest fixtures that start them.

Each server is an aiosmtpd protocol (``tests.smtpscript.ScriptedSMTP``) on its
own event loop thread, listening on 127.0.0.1 (or ::1) on an ephemeral port,
so the delivery engine meets the same bytes on the wire as from a real relay.
Tests read what arrived from their own thread: ``messages``, ``attempts``,
``sessions``, ``transactions``, ``errors`` and ``wait_for()``.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.smtpscript import ReceivedMessage, ScriptedHandler, ScriptedSMTP, ServerOptions
from tests.tlscerts import TLSCerts

__all__ = [
    "ReceivedMessage",
    "SMTPTestServer",
    "ServerOptions",
    "refused_port",
    "smtp_server",
]


class SMTPTestServer:
    """A running test relay; read what it received from the test thread."""

    def __init__(
        self,
        *,
        tls_certs: TLSCerts | None = None,
        tls_context: ssl.SSLContext | None = None,
        **options: Any,
    ) -> None:
        """``tls_context``: a server context of the test's own (a certificate for
        other names), instead of ``tls_certs``' certificate named by ``cert``."""
        self.options = ServerOptions(**options)
        if self.options.tls and tls_certs is None and tls_context is None:
            raise ValueError(f"tls={self.options.tls!r} needs tls_certs")
        self.host = self.options.host
        self.port = 0
        self._tls_context = tls_context or (
            tls_certs.server_context(self.options.cert) if tls_certs else None
        )
        self._cond = threading.Condition()
        self._attempts: list[ReceivedMessage] = []
        self._errors: list[str] = []
        self._counts: Counter[str] = Counter()
        self._uses: Counter[Any] = Counter()  # scripted replies used; loop thread only
        self._connections: set[ScriptedSMTP] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"<SMTPTestServer {self.host}:{self.port} tls={self.options.tls}>"

    # What arrived.
    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def attempts(self) -> list[ReceivedMessage]:
        """Every message whose final dot arrived, whatever the reply (None: dropped)."""
        with self._cond:
            return list(self._attempts)

    @property
    def messages(self) -> list[ReceivedMessage]:
        """Messages accepted with a 2xx end-of-data reply."""
        return [m for m in self.attempts if m.accepted]

    @property
    def sessions(self) -> int:
        """TCP connections accepted, including ones that failed the TLS handshake."""
        with self._cond:
            return self._counts["sessions"]

    @property
    def transactions(self) -> int:
        """MAIL FROM commands that reached the scripted stage (accepted or not)."""
        with self._cond:
            return self._counts["transactions"]

    @property
    def open_connections(self) -> int:
        """Client connections not closed yet: while there are any, more may be recorded."""
        return len(self._connections)

    @property
    def errors(self) -> list[str]:
        """Unexpected server-side exceptions; a healthy test expects none."""
        with self._cond:
            return list(self._errors)

    def wait_for(self, count: int = 1, timeout: float = 10.0) -> list[ReceivedMessage]:
        """Block until ``count`` messages were accepted; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while sum(m.accepted for m in self._attempts) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"{self!r}: expected {count} accepted message(s) within {timeout}s, "
                        f"got {sum(m.accepted for m in self._attempts)}; "
                        f"attempts={len(self._attempts)} sessions={self._counts['sessions']} "
                        f"errors={self._errors}"
                    )
                self._cond.wait(remaining)
            return [m for m in self._attempts if m.accepted]

    # Called on the loop thread.
    def _take(self, key: Any, reply: Any, times: int | None) -> Any:
        if reply is None or (times is not None and self._uses[key] >= times):
            return None
        self._uses[key] += 1
        return reply

    def _count(self, name: str) -> int:
        with self._cond:
            self._counts[name] += 1
            return self._counts[name]

    def _record(self, message: ReceivedMessage) -> None:
        with self._cond:
            self._attempts.append(message)
            self._cond.notify_all()

    def _error(self, text: str) -> None:
        with self._cond:
            self._errors.append(text)

    def _protocol(self) -> ScriptedSMTP:
        opts = self.options
        excluded = {"PLAIN", "LOGIN"} - {m.upper() for m in opts.auth_mechanisms}
        handler = ScriptedHandler(self)
        protocol = ScriptedSMTP(
            self,
            self._count("sessions"),
            handler=handler,
            hostname="localhost",
            ident="django-smtprelay test relay",
            loop=self._loop,
            data_size_limit=opts.size_limit,
            enable_SMTPUTF8="SMTPUTF8" not in {e.upper() for e in opts.disable_extensions},
            tls_context=self._tls_context if opts.tls == "starttls" else None,
            require_starttls=opts.require_tls and opts.tls == "starttls",
            auth_require_tls=not opts.auth_allow_plaintext and opts.tls != "implicit",
            auth_exclude_mechanism=excluded,
            authenticator=handler.authenticate,
            timeout=60,
        )
        self._connections.add(protocol)
        return protocol

    # Lifecycle.
    def start(self) -> SMTPTestServer:
        assert self._thread is None, f"{self!r} already started"
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self._thread.name = f"smtp-test-server-{id(self):x}"
        self._thread.start()
        if not ready.wait(10) or not self.port:
            self.stop()
            raise RuntimeError(f"test SMTP server did not start: {self.errors}")
        return self

    def _run(self, ready: threading.Event) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        loop.set_exception_handler(lambda _loop, context: self._error(context["message"]))
        ssl_context = self._tls_context if self.options.tls == "implicit" else None
        try:
            server = loop.run_until_complete(
                loop.create_server(self._protocol, host=self.host, port=0, ssl=ssl_context)
            )
        except OSError as error:
            self._error(f"cannot listen on {self.host}: {error}")
            ready.set()
            loop.close()
            return
        self.port = server.sockets[0].getsockname()[1]
        loop.call_soon(ready.set)
        try:
            loop.run_forever()
        finally:
            server.close()
            for connection in list(self._connections):
                connection.close()
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(
                asyncio.wait([loop.create_task(server.wait_closed())], timeout=2)
            )
            loop.close()

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._thread = None

    def __enter__(self) -> SMTPTestServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@pytest.fixture
def smtp_server(tls_certs: TLSCerts) -> Iterator[Callable[..., SMTPTestServer]]:
    """Factory: ``smtp_server(**ServerOptions fields)`` starts a server; all stop at teardown."""
    servers: list[SMTPTestServer] = []

    def start(**options: Any) -> SMTPTestServer:
        options.setdefault("tls_certs", tls_certs)
        server = SMTPTestServer(**options)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def refused_port() -> int:
    """A port on 127.0.0.1 where nothing listens (connections are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
