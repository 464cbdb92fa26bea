"""Real SMTP servers for the test suite, scriptable per SMTP stage.

Each server is an aiosmtpd ``SMTP`` protocol on its own event loop thread,
listening on 127.0.0.1 (or ::1) on an ephemeral port.  Every reply a relay can
give at each stage can be scripted, optionally for the first N times only, so
the delivery engine is tested against the same bytes on the wire that a real
relay sends.  A reply whose code is 421 closes the connection after it is
sent, as RFC 5321 section 3.8 requires; so does a non-2xx greeting.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal, NoReturn

import pytest
from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.tlscerts import CERT_CHOICES, TLSCerts

__all__ = [
    "ReceivedMessage",
    "SMTPTestServer",
    "ServerOptions",
    "refused_port",
    "smtp_server",
]

LOOPBACK = ("127.0.0.1", "::1")
RcptReplies = Mapping[str | re.Pattern[str], str] | Callable[[str], str | None]


@dataclass(frozen=True)
class ReceivedMessage:
    """One message whose data ended with the final dot, as the server saw it."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes  # exactly as received, dot-unstuffed, with CRLF line ends
    tls: bool
    auth_user: str | None
    session: int  # 1-based number of the connection it arrived on
    ehlo_name: str | None
    mail_options: tuple[str, ...]
    rcpt_options: tuple[str, ...]
    reply: str | None = None  # the end-of-data reply; None when the connection was dropped

    @property
    def accepted(self) -> bool:
        return self.reply is not None and self.reply.startswith("2")


@dataclass(kw_only=True)
class ServerOptions:
    """What a test server does; every ``*_times`` limits its reply to the first N uses."""

    host: str = "127.0.0.1"
    tls: Literal["starttls", "implicit"] | None = None
    cert: str = "good"  # one of tlscerts.CERT_CHOICES
    require_tls: bool = False  # 530 to MAIL before STARTTLS
    auth: Mapping[str, str] | None = None  # {user: password}; AUTH then required for MAIL
    auth_allow_plaintext: bool = False
    auth_mechanisms: Collection[str] = ("PLAIN", "LOGIN")
    size_limit: int = 33_554_432
    disable_extensions: Collection[str] = ()  # e.g. {"SMTPUTF8", "PIPELINING"}
    greeting: str | None = None
    greeting_times: int | None = None
    ehlo_reply: str | None = None
    ehlo_reply_times: int | None = None
    helo_reply: str | None = None
    helo_reply_times: int | None = None
    starttls_reply: str | None = None
    starttls_reply_times: int | None = None
    mail_reply: str | Callable[[str], str | None] | None = None
    mail_reply_times: int | None = None
    rcpt_replies: RcptReplies | None = None  # address or pattern -> reply
    rcpt_reply_times: int | None = None  # counted per address
    data_reply: str | None = None  # replaces the 354 to DATA; must be 4xx/5xx
    data_reply_times: int | None = None
    drop_after_data_cmd: bool = False  # close without replying to DATA
    drop_after_data_cmd_times: int | None = None
    dot_reply: str | Callable[[ReceivedMessage], str | None] | None = None
    dot_reply_times: int | None = None
    drop_after_dot: bool = False  # read the data and final dot, then close without replying
    drop_after_dot_times: int | None = None
    dot_delay: float = 0.0  # seconds before the end-of-data reply

    def __post_init__(self) -> None:
        if self.host not in LOOPBACK:
            raise ValueError(f"host={self.host!r}: test servers listen only on {LOOPBACK}")
        if self.tls not in (None, "starttls", "implicit"):
            raise ValueError(f"tls={self.tls!r}: expected None, 'starttls' or 'implicit'")
        if self.cert not in CERT_CHOICES:
            raise ValueError(f"cert={self.cert!r}: expected one of {CERT_CHOICES}")
        if self.data_reply is not None and self.data_reply[:1] not in ("4", "5"):
            raise ValueError(f"data_reply={self.data_reply!r}: script only 4xx/5xx here")


def _wire(reply: str) -> str:
    """Let tests write multi-line replies with plain newlines."""
    return "\r\n".join(reply.replace("\r\n", "\n").split("\n"))


class _Handler:
    """aiosmtpd hooks; ``server`` in each hook is the connection's protocol."""

    def __init__(self, owner: SMTPTestServer) -> None:
        self.owner = owner
        self.options = owner.options

    def _take(self, key: Any, reply: Any, times: int | None) -> Any:
        return self.owner._take(key, reply, times)

    async def handle_EHLO(
        self, server: _ScriptedSMTP, session: Session, envelope: Envelope, hostname: str, responses
    ) -> list[str]:
        reply = self._take("ehlo", self.options.ehlo_reply, self.options.ehlo_reply_times)
        if reply is not None:
            if reply.startswith("2"):
                session.host_name = hostname
            return [_wire(reply)]
        session.host_name = hostname
        disabled = {name.upper() for name in self.options.disable_extensions}
        if self.options.auth is None:
            disabled.add("AUTH")
        lines = [line for line in responses[1:-1] if line[4:].split(" ")[0] not in disabled]
        if "PIPELINING" not in disabled:
            lines.append("250-PIPELINING")
        return [responses[0], *lines, responses[-1]]

    async def handle_HELO(
        self, server: _ScriptedSMTP, session: Session, envelope: Envelope, hostname: str
    ) -> Any:
        reply = self._take("helo", self.options.helo_reply, self.options.helo_reply_times)
        if reply is not None and reply.startswith("2"):
            session.host_name = hostname
        return MISSING if reply is None else reply

    async def handle_AUTH(
        self, server: _ScriptedSMTP, session: Session, envelope: Envelope, args: list[str]
    ) -> Any:
        return "502 5.5.1 AUTH not available" if self.options.auth is None else MISSING

    def authenticate(
        self, server: _ScriptedSMTP, session: Session, envelope: Envelope, mechanism: str, data
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        expected = (self.options.auth or {}).get(data.login.decode("utf-8", "replace"))
        ok = expected is not None and secrets.compare_digest(expected.encode(), data.password)
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)

    async def handle_MAIL(
        self, server: _ScriptedSMTP, session: Session, envelope: Envelope, address: str, options
    ) -> str:
        self.owner._count("transactions")
        reply = self.options.mail_reply
        if callable(reply):
            reply = reply(address)
        reply = self._take("mail", reply, self.options.mail_reply_times)
        if reply is None or reply.startswith("2"):
            envelope.mail_from = address
            envelope.mail_options.extend(options)
        return reply or "250 2.1.0 Ok"

    def _rcpt_reply(self, address: str) -> str | None:
        replies = self.options.rcpt_replies
        if replies is None:
            return None
        if callable(replies):
            return replies(address)
        if address in replies:
            return replies[address]
        for key, reply in replies.items():
            if isinstance(key, re.Pattern) and key.fullmatch(address):
                return reply
        return None

    async def handle_RCPT(
        self, server: _ScriptedSMTP, session: Session, envelope: Envelope, address: str, options
    ) -> str:
        reply = self._rcpt_reply(address)
        reply = self._take(("rcpt", address), reply, self.options.rcpt_reply_times)
        if reply is None or reply.startswith("2"):
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(options)
        return reply or "250 2.1.5 Ok"

    async def handle_DATA(self, server: _ScriptedSMTP, session: Session, envelope: Envelope) -> str:
        auth = session.auth_data
        message = ReceivedMessage(
            mail_from=envelope.mail_from or "",
            rcpt_tos=tuple(envelope.rcpt_tos),
            data=bytes(envelope.original_content or b""),
            tls=server.is_tls,
            auth_user=auth.login.decode() if isinstance(auth, LoginPassword) else None,
            session=server.session_number,
            ehlo_name=session.host_name,
            mail_options=tuple(envelope.mail_options),
            rcpt_options=tuple(envelope.rcpt_options),
        )
        if self.options.dot_delay:
            await asyncio.sleep(self.options.dot_delay)
        opts = self.options
        if self._take("drop_after_dot", opts.drop_after_dot or None, opts.drop_after_dot_times):
            self.owner._record(message)
            server.drop()
        reply = opts.dot_reply(message) if callable(opts.dot_reply) else opts.dot_reply
        reply = self._take("dot", reply, opts.dot_reply_times)
        reply = _wire(reply or f"250 2.0.0 Ok: queued as {secrets.token_hex(5).upper()}")
        self.owner._record(replace(message, reply=reply))
        return reply

    async def handle_exception(self, error: Exception) -> str:
        self.owner._error(f"{type(error).__name__}: {error}")
        return f"500 5.3.0 Error: ({type(error).__name__}) {error}"


class _ScriptedSMTP(SMTP):
    """aiosmtpd's protocol plus the stages it has no hooks for."""

    def __init__(self, owner: SMTPTestServer, session_number: int, **kwargs: Any) -> None:
        self.owner = owner
        self.session_number = session_number
        self._implicit_tls = owner.options.tls == "implicit"
        self._greeted = False
        super().__init__(**kwargs)
        # Set after __init__, which warns when AUTH is required over plaintext.
        self._auth_required = owner.options.auth is not None

    @property
    def is_tls(self) -> bool:
        return self._implicit_tls or self._tls_protocol is not None

    def drop(self) -> NoReturn:
        """Close the connection without a reply and end this session's handler."""
        if self.transport is not None:
            self.transport.close()
        raise asyncio.CancelledError

    async def push(self, status: str | bytes) -> None:
        greeting = not self._greeted
        if greeting:
            self._greeted = True
            opts = self.owner.options
            status = self.owner._take("greeting", opts.greeting, opts.greeting_times) or status
        if isinstance(status, str):
            status = _wire(status)
        await super().push(status)
        code = status[:3] if isinstance(status, str) else status[:3].decode("ascii", "replace")
        closing = code == "421" or (greeting and not code.startswith("2"))
        if closing and self.transport is not None:
            self.transport.close()

    async def smtp_STARTTLS(self, arg: str) -> None:
        opts = self.owner.options
        reply = self.owner._take("starttls", opts.starttls_reply, opts.starttls_reply_times)
        if reply is not None and not arg and self.tls_context:
            await self.push(reply)
            return
        await super().smtp_STARTTLS(arg)

    async def smtp_DATA(self, arg: str) -> None:
        assert self.session is not None and self.envelope is not None
        ready = (
            self.session.host_name
            and self.envelope.rcpt_tos
            and not arg
            and (self.session.authenticated or not self._auth_required)
        )
        if ready:
            opts = self.owner.options
            drop = opts.drop_after_data_cmd or None
            if self.owner._take("drop_after_data_cmd", drop, opts.drop_after_data_cmd_times):
                self.drop()
            reply = self.owner._take("data", opts.data_reply, opts.data_reply_times)
            if reply is not None:
                await self.push(reply)
                return
        await super().smtp_DATA(arg)

    def connection_lost(self, error: Exception | None) -> None:
        self.owner._connections.discard(self)
        super().connection_lost(error)


class SMTPTestServer:
    """A running test relay; read what it received from the test thread."""

    def __init__(self, *, tls_certs: TLSCerts | None = None, **options: Any) -> None:
        self.options = ServerOptions(**options)
        if self.options.tls and tls_certs is None:
            raise ValueError(f"tls={self.options.tls!r} needs tls_certs")
        self.host = self.options.host
        self.port = 0
        self._tls_context = tls_certs.server_context(self.options.cert) if tls_certs else None
        self._cond = threading.Condition()
        self._attempts: list[ReceivedMessage] = []
        self._errors: list[str] = []
        self._counts: Counter[str] = Counter()
        self._uses: Counter[Any] = Counter()  # scripted replies used; loop thread only
        self._connections: set[_ScriptedSMTP] = set()
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

    def _protocol(self) -> _ScriptedSMTP:
        opts = self.options
        excluded = {"PLAIN", "LOGIN"} - {m.upper() for m in opts.auth_mechanisms}
        handler = _Handler(self)
        protocol = _ScriptedSMTP(
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
                if connection.transport is not None:
                    connection.transport.close()
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
        server = SMTPTestServer(tls_certs=tls_certs, **options)
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
