"""What a test relay says at each SMTP stage: options, aiosmtpd hooks, the protocol.

aiosmtpd has handler hooks for EHLO, HELO, MAIL, RCPT, AUTH and end of data;
the greeting, STARTTLS and the DATA command (354 stage) have none, so
``ScriptedSMTP`` overrides those on the protocol itself.  A reply whose code is
421 closes the connection after it is sent, as RFC 5321 section 3.8 requires;
so does a non-2xx greeting.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal, NoReturn

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.tlscerts import CERT_CHOICES

if TYPE_CHECKING:
    from tests.smtpserver import SMTPTestServer

__all__ = ["ReceivedMessage", "ScriptedHandler", "ScriptedSMTP", "ServerOptions"]

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
    ehlo_reply_tls: str | None = None  # the reply to EHLO once TLS is on
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
    rset_reply: str | None = None
    rset_reply_times: int | None = None
    drop_on_rset: bool = False  # close without replying to RSET

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


class ScriptedHandler:
    """aiosmtpd hooks; ``server`` in each hook is the connection's protocol."""

    def __init__(self, owner: SMTPTestServer) -> None:
        self.owner = owner
        self.options = owner.options

    def _take(self, key: Any, reply: Any, times: int | None) -> Any:
        return self.owner._take(key, reply, times)

    async def handle_EHLO(
        self, server: ScriptedSMTP, session: Session, envelope: Envelope, hostname: str, responses
    ) -> list[str]:
        reply = self._take("ehlo", self.options.ehlo_reply, self.options.ehlo_reply_times)
        if server.is_tls and self.options.ehlo_reply_tls is not None:
            reply = self.options.ehlo_reply_tls
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
        self, server: ScriptedSMTP, session: Session, envelope: Envelope, hostname: str
    ) -> Any:
        reply = self._take("helo", self.options.helo_reply, self.options.helo_reply_times)
        if reply is not None and reply.startswith("2"):
            session.host_name = hostname
        return MISSING if reply is None else reply

    async def handle_AUTH(
        self, server: ScriptedSMTP, session: Session, envelope: Envelope, args: list[str]
    ) -> Any:
        return "502 5.5.1 AUTH not available" if self.options.auth is None else MISSING

    def authenticate(
        self, server: ScriptedSMTP, session: Session, envelope: Envelope, mechanism: str, data
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        expected = (self.options.auth or {}).get(data.login.decode("utf-8", "replace"))
        ok = expected is not None and secrets.compare_digest(expected.encode(), data.password)
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)

    async def handle_MAIL(
        self, server: ScriptedSMTP, session: Session, envelope: Envelope, address: str, options
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
        self, server: ScriptedSMTP, session: Session, envelope: Envelope, address: str, options
    ) -> str:
        reply = self._rcpt_reply(address)
        reply = self._take(("rcpt", address), reply, self.options.rcpt_reply_times)
        if reply is None or reply.startswith("2"):
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(options)
        return reply or "250 2.1.5 Ok"

    async def handle_DATA(self, server: ScriptedSMTP, session: Session, envelope: Envelope) -> str:
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


class ScriptedSMTP(SMTP):
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

    async def smtp_RSET(self, arg: str) -> None:
        opts = self.owner.options
        if opts.drop_on_rset:
            self.drop()
        reply = self.owner._take("rset", opts.rset_reply, opts.rset_reply_times)
        if reply is not None and not arg:
            await self.push(reply)
            return
        await super().smtp_RSET(arg)

    def close(self) -> None:
        """Close the connection, including the plain socket under a STARTTLS layer."""
        for transport in (self.transport, self._original_transport):
            if transport is not None:
                transport.close()

    def connection_lost(self, error: Exception | None) -> None:
        self.owner._connections.discard(self)
        super().connection_lost(error)
