"""Delivery to an SMTP smarthost with smtplib: TLS verified, AUTH only over TLS.

Every recipient gets its own reply and every failure is tied to the stage it
happened at. When the relay offers PIPELINING (RFC 2920), MAIL, the RCPTs and
DATA go out in one write and their replies are read back in order, so a
message costs two round trips instead of three plus one per recipient;
otherwise each command waits for its reply. When the engine says which
message comes next, that message's commands go out in the same write as this
one's content (RFC 2920 lets message content open a group), so on a busy
session each message waits for the relay once.
"""

from __future__ import annotations

import base64
import hmac
import re
import smtplib
import socket
import ssl
import time
from collections.abc import Callable
from functools import lru_cache
from typing import Any, NoReturn

from ..conf import app_settings
from ..exceptions import SMTPRelayError
from ..models import Route
from ..replies import Outcome, Stage, Verdict, classify, classify_exception, parse_enhanced
from ..routing import RouteSpec
from .base import Content, Envelope, RecipientResult, Reply, SendResult, TransportError
from .provider_ids import provider_id_from_reply
from .sevenbit import SevenBitError, to_seven_bit

_DOT_STUFF = re.compile(rb"^\.", re.MULTILINE)


@lru_cache(maxsize=8)
def tls_context(verify: bool, ca_file: str | None) -> ssl.SSLContext:
    """A client TLS context: certificates and host names verified unless told otherwise."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


# A longer reply ends the session: EHLO lists a dozen or two extensions.
_MAX_REPLY_LINES = 256


class ReplyTooLong(OSError):
    """A reply went on past its bound (raised inside smtplib's reply reader,
    which turns an OSError into a disconnect, as it does a timeout)."""


class _BoundedReplies:
    """The relay's reply stream, each reply bounded in lines and in time.

    smtplib reads continuation lines (``250-...``) for as long as they come,
    each within the socket's timeout: a relay that keeps sending them (a
    tarpit) would hold the session, and the worker, for ever. A reply longer
    than ``_MAX_REPLY_LINES`` lines, or still going after the route's timeout,
    ends the session as a timeout does (:class:`ReplyTooLong`). Single-line replies (nearly all of
    them) cost one comparison.
    """

    def __init__(self, file: Any, timeout: float | None) -> None:
        self._file = file
        self._timeout = timeout or 60.0
        self._lines = 0
        self._started = 0.0

    def readline(self, limit: int = -1) -> bytes:
        line = self._file.readline(limit)
        if line[3:4] != b"-":  # the reply's last line
            self._lines = 0
            return line
        self._lines += 1
        if self._lines == 1:
            self._started = time.monotonic()
        elif self._lines > _MAX_REPLY_LINES:
            raise ReplyTooLong(f"the relay's reply went on for more than {_MAX_REPLY_LINES} lines")
        elif time.monotonic() - self._started > self._timeout:
            raise ReplyTooLong(f"the relay's reply went on for more than {self._timeout:g} s")
        return line

    def close(self) -> None:
        self._file.close()


class _SMTPMixin:
    """Tracks whether the final dot went out, so a lost reply is 'uncertain'."""

    final_dot_sent = False
    # Called with smtplib's debug output (``set_debuglevel(1)``) to show a
    # route test's dialogue in the admin; deliveries leave it unset, and
    # smtplib makes no debug call at level 0.
    dialogue: Callable[..., None] | None = None

    def _print_debug(self, *args: Any) -> None:
        if self.dialogue is not None:
            self.dialogue(*args)

    def getreply(self) -> tuple[int, bytes]:
        # smtplib makes its reply stream on first use (and again after STARTTLS).
        if self.file is None and self.sock is not None:  # type: ignore[attr-defined]
            self.file = _BoundedReplies(self.sock.makefile("rb"), self.timeout)  # type: ignore[attr-defined]
        return super().getreply()  # type: ignore[misc]

    # Connected (for implicit TLS, with the handshake done): what fails next is the greeting.
    connected = False

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock = super()._get_socket(host, port, timeout)  # type: ignore[misc]
        self.connected = True
        return sock

    def send_data(self, data: bytes | Content) -> tuple[int, bytes, Stage]:
        self.final_dot_sent = False
        self.putcmd("data")  # type: ignore[attr-defined]
        code, reply = self.getreply()  # type: ignore[attr-defined]
        if code != 354:
            return code, reply, Stage.DATA
        return self.send_body(data)

    def send_body(
        self,
        data: bytes | Content,
        then: bytes = b"",
        meanwhile: Callable[[], None] | None = None,
    ) -> tuple[int, bytes, Stage]:
        """Send the message after a 354 reply, dot-stuffed, and read the reply to the dot.

        ``then``: commands of the next transaction, written with the final dot.
        ``meanwhile``: called after the final dot, before its reply is read.
        """
        if isinstance(data, bytes):
            payload = _DOT_STUFF.sub(b"..", data) if _needs_stuffing(data) else data
            if not payload.endswith(b"\r\n"):
                payload += b"\r\n"
            self.send(payload + b".\r\n" + then)  # type: ignore[attr-defined]
        else:
            self.send(_streamed(self, data) + b".\r\n" + then)  # type: ignore[attr-defined]
        self.final_dot_sent = True
        if meanwhile is not None:
            meanwhile()
        code, reply = self.getreply()  # type: ignore[attr-defined]
        return code, reply, Stage.DOT


class _UTF8AuthMixin:
    """SMTP AUTH with UTF-8 credentials.

    smtplib encodes AUTH responses as ASCII, so a non-ASCII username or
    password raises ``UnicodeEncodeError`` mid-login. PLAIN is UTF-8 by
    definition (RFC 4616), and servers read LOGIN and CRAM-MD5 secrets as
    UTF-8 too; ASCII credentials are sent exactly as before.
    """

    user: str
    password: str

    def auth(self, mechanism, authobject, *, initial_response_ok=True):  # type: ignore[no-untyped-def]
        mechanism = mechanism.upper()
        initial = authobject() if initial_response_ok else None
        if initial is not None:
            code, resp = self.docmd("AUTH", f"{mechanism} {_b64(initial)}")  # type: ignore[attr-defined]
            self._auth_challenge_count = 1
        else:
            code, resp = self.docmd("AUTH", mechanism)  # type: ignore[attr-defined]
            self._auth_challenge_count = 0
        while code == 334:
            self._auth_challenge_count += 1
            if self._auth_challenge_count > _MAX_AUTH_CHALLENGES:
                raise smtplib.SMTPException(
                    f"the relay kept sending AUTH {mechanism} challenges; last reply {code}"
                )
            code, resp = self.docmd(_b64(authobject(base64.decodebytes(resp))))  # type: ignore[attr-defined]
        if code in (235, 503):
            return code, resp
        raise smtplib.SMTPAuthenticationError(code, resp)

    def auth_cram_md5(self, challenge: bytes | None = None) -> str | None:
        if challenge is None:
            return None
        digest = hmac.HMAC(self.password.encode("utf-8"), challenge, "md5").hexdigest()
        return f"{self.user} {digest}"


_MAX_AUTH_CHALLENGES = 5


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def _needs_stuffing(data: bytes) -> bool:
    return data.startswith(b".") or b"\n." in data


def _streamed(conn: Any, content: Content) -> bytes:
    """Write ``content`` dot-stuffed, a chunk at a time; return what must
    precede the final dot (a line end, if the content lacks one)."""
    at_line_start = True  # the message's first byte starts a line
    tail = b""
    for chunk in content.chunks():
        if not chunk:
            continue
        if (at_line_start and chunk.startswith(b".")) or b"\n." in chunk:
            stuffed = _DOT_STUFF.sub(b"..", chunk)
            if not at_line_start and chunk.startswith(b"."):
                stuffed = stuffed[1:]  # ^ matched at the chunk's start, which is mid-line
            conn.send(stuffed)
        else:
            conn.send(chunk)
        at_line_start = chunk.endswith(b"\n")
        tail = (tail + chunk[-2:])[-2:]
    return b"" if tail == b"\r\n" else b"\r\n"


class _SMTP(_UTF8AuthMixin, _SMTPMixin, smtplib.SMTP):
    pass


class _SMTP_SSL(_UTF8AuthMixin, _SMTPMixin, smtplib.SMTP_SSL):
    pass


def _classify(stage: Stage, code: int | None, text: str, enhanced: str = "") -> Verdict:
    """The reply table, with the site's settings for the configurable cases."""
    if code is not None and 200 <= code < 400:  # accepted: no setting applies
        return classify(stage, code, text, enhanced)
    return classify(
        stage,
        code,
        text,
        enhanced,
        content_rejection=Outcome(app_settings.content_rejection),
        mailbox_full_give_up=app_settings.mailbox_full_give_up,
    )


def _reply(stage: Stage, code: int | None, raw: bytes | str) -> Reply:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    if code is not None and not 100 <= code <= 599:
        # Not an SMTP reply (garbage, or cut off): smtplib's code is -1 or the
        # digits it got, which no column can hold; the text says what came.
        return Reply(stage=stage, text=f"unreadable reply ({code}): {text}"[:4000])
    enhanced, rest = parse_enhanced(text)
    return Reply(stage=stage, code=code, enhanced=enhanced, text=rest)


class _Transaction:
    """Where one message's exchange got to, and what each recipient was told."""

    def __init__(self, envelope: Envelope) -> None:
        self.envelope = envelope
        self.stage = Stage.MAIL
        self.results: dict[str, RecipientResult] = {}
        self.accepted: list[str] = []
        self.verdict: Verdict | None = None
        self.reply: Reply | None = None

    def rcpt_reply(self, address: str, code: int, msg: bytes) -> None:
        if code in (250, 251):
            self.accepted.append(address)
            return
        reply = _reply(Stage.RCPT, code, msg)
        verdict = _classify(Stage.RCPT, code, reply.text, reply.enhanced)
        self.results[address] = RecipientResult(address, verdict, reply)

    def all_refused(self) -> SendResult:
        first = self.results[self.envelope.recipients[0]]
        return SendResult(first.verdict, first.reply, list(self.results.values()))

    def end(self, code: int, msg: bytes, stage: Stage) -> None:
        """The reply to DATA (refused) or to the final dot."""
        self.reply = _reply(stage, code, msg)
        self.verdict = _classify(stage, code, self.reply.text, self.reply.enhanced)


class SMTPTransport:
    """One SMTP session to one route, reused for a batch of messages."""

    #: ``send`` takes ``following=``, the message the caller sends next.
    pipelines_messages = True

    def __init__(self, route: RouteSpec) -> None:
        self.route = route
        self.conn: _SMTP | None = None
        self.sessions = 0
        # A message whose MAIL, RCPTs and DATA went out with the previous
        # message's content; its replies are read when it is sent.
        self._announced: Envelope | None = None
        self._meanwhile: Callable[[], None] | None = None
        # The last message made 7-bit for a relay without 8BITMIME, and its
        # 7-bit form (or why it has none): the message announced with
        # ``following`` is converted once, when its commands go out.
        self._seven_bit: tuple[Envelope, Envelope | str] | None = None
        # A route test's recorder (see transports.probe): sees every line.
        self.dialogue: Callable[..., None] | None = None

    def __repr__(self) -> str:
        return f"<SMTPTransport {self.route.name} {self.route.host}:{self.route.port}>"

    @property
    def is_open(self) -> bool:
        return self.conn is not None and self.conn.sock is not None

    def open(self) -> None:
        """Connect, say EHLO, STARTTLS and AUTH as the route says; raise TransportError."""
        route = self.route
        stage = Stage.CONNECT
        # Built (once per process) only for a route that uses TLS: loading the
        # system's CA store costs tens of milliseconds.
        context = (
            tls_context(route.verify_certificate, app_settings.tls_ca_file)
            if route.security != Route.Security.NONE
            else None
        )
        hostname = route.ehlo_hostname or app_settings.ehlo_hostname or socket.getfqdn()
        password = self._password()
        try:
            if route.security == Route.Security.TLS:
                conn: _SMTP = _SMTP_SSL(
                    local_hostname=hostname, timeout=route.timeout, context=context
                )
            else:
                conn = _SMTP(local_hostname=hostname, timeout=route.timeout)
            self.conn = conn
            if self.dialogue is not None:
                conn.dialogue = self.dialogue
                conn.set_debuglevel(1)
            # smtplib takes the TLS server name from the constructor's host only.
            conn._host = route.host
            code, msg = conn.connect(route.host, route.port)
            self.sessions += 1
            if code != 220:
                self._fail(Stage.GREETING, code, msg)
            stage = Stage.EHLO
            code, msg = conn.ehlo()
            if code != 250:
                code, msg = conn.helo()
                if code != 250:
                    self._fail(Stage.EHLO, code, msg)
            secure = route.security == Route.Security.TLS
            if route.security == Route.Security.STARTTLS:
                stage = Stage.STARTTLS
                if not conn.has_extn("starttls"):
                    self._refuse(stage, "the relay does not offer STARTTLS; the route requires it")
                code, msg = conn.starttls(context=context)
                if code != 220:
                    self._fail(stage, code, msg)
                stage = Stage.EHLO
                code, msg = conn.ehlo()
                if code != 250:
                    self._fail(stage, code, msg)
                secure = True
            if route.username:
                stage = Stage.AUTH
                if not secure and not route.allow_plaintext_auth:
                    self._refuse(
                        stage,
                        "refusing to send credentials over a plaintext connection; use STARTTLS "
                        "or implicit TLS, or allow plaintext AUTH on the route explicitly",
                    )
                try:
                    conn.login(route.username, password)
                except smtplib.SMTPAuthenticationError as exc:
                    self._fail(stage, exc.smtp_code, exc.smtp_error)
                except smtplib.SMTPNotSupportedError:
                    self._refuse(stage, "the relay does not offer AUTH; the route has a username")
                except smtplib.SMTPException as exc:
                    if isinstance(exc, smtplib.SMTPResponseException):
                        self._fail(stage, exc.smtp_code, exc.smtp_error)
                    self._refuse(stage, "no AUTH mechanism in common with the relay")
        except TransportError:
            self.close()
            raise
        except smtplib.SMTPResponseException as exc:
            self.close()
            stage = Stage.GREETING if stage == Stage.CONNECT else stage
            verdict = _classify(stage, exc.smtp_code, _reply(stage, None, exc.smtp_error).text)
            raise TransportError(verdict, _reply(stage, exc.smtp_code, exc.smtp_error)) from None
        except (OSError, smtplib.SMTPException) as exc:
            if stage == Stage.CONNECT and self.conn is not None and self.conn.connected:
                stage = Stage.GREETING
            self.close()
            reply = Reply(stage=stage, text=_describe(exc), exception=type(exc).__name__)
            raise TransportError(classify_exception(stage, exc), reply) from None

    def _password(self) -> str:
        """The route's password, opened before connecting: one that cannot be used
        (no key opens it, or it was typed for another destination) is a route fault,
        and nothing is sent."""
        if not self.route.username:
            return ""
        try:
            return self.route.login_password()
        except SMTPRelayError as exc:
            self._refuse(Stage.AUTH, f"the route's password cannot be used: {exc}")

    def _fail(self, stage: Stage, code: int, msg: bytes | str) -> None:
        reply = _reply(stage, code, msg)
        raise TransportError(_classify(stage, code, reply.text, reply.enhanced), reply)

    def _refuse(self, stage: Stage, reason: str) -> NoReturn:
        raise TransportError(Verdict(Outcome.ROUTE_FAULT, reason), Reply(stage=stage, text=reason))

    def send(
        self,
        envelope: Envelope,
        *,
        following: Envelope | None = None,
        meanwhile: Callable[[], None] | None = None,
    ) -> SendResult:
        """Send one message; per-recipient results. Never raises for SMTP or socket errors.

        ``following``: the message the caller will send next on this session
        (the very next ``send``, or ``close``). Its commands are pipelined
        with this message's content when the relay allows it.
        ``meanwhile``: called once before ``send`` returns; when pipelining,
        while the relay works on this message (so must not raise).
        """
        self._meanwhile = meanwhile
        try:
            return self._send(envelope, following)
        finally:
            self._run_meanwhile()

    def _run_meanwhile(self) -> None:
        hook, self._meanwhile = self._meanwhile, None
        if hook is not None:
            hook()

    def _send(self, envelope: Envelope, following: Envelope | None) -> SendResult:
        conn = self.conn
        assert conn is not None, "open() first"
        pending = self._announced
        if pending is not None and pending is not envelope:
            self.close()  # the relay drops the announced transaction
            raise RuntimeError("send() after following=X must send X (or close the session)")
        announced, self._announced = pending is not None, None
        wire = self._wire_form(conn, envelope)
        if isinstance(wire, str):
            return self._not_for_this_relay(envelope, wire)
        needs_utf8 = self._needs_smtputf8(conn, envelope)
        if needs_utf8:
            return self._not_for_this_relay(envelope, needs_utf8)
        too_large = self._too_large(conn, wire)
        if too_large:
            # The relay said (EHLO SIZE) it would refuse this: another route may take it.
            return self._not_for_this_relay(envelope, too_large)
        tx = _Transaction(wire)
        try:
            if announced or self._can_pipeline(conn, envelope):
                next_wire = self._wire_form(conn, following) if following is not None else None
                if not isinstance(next_wire, Envelope) or (
                    not self._can_pipeline(conn, next_wire) or self._too_large(conn, next_wire)
                ):
                    following = next_wire = None
                early = self._exchange_pipelined(conn, tx, announced, next_wire)
                if self._announced is not None:
                    self._announced = following  # the caller's object: send() checks it
            else:
                early = self._exchange(conn, tx)
            if early is not None:
                return early
        except (OSError, smtplib.SMTPException) as exc:
            after_dot = tx.stage == Stage.DATA and conn.final_dot_sent
            stage = Stage.DOT if after_dot else tx.stage
            self.close()
            tx.verdict = classify_exception(stage, exc, after_dot=after_dot)
            tx.reply = Reply(stage=stage, text=_describe(exc), exception=type(exc).__name__)
            undecided = [a for a in envelope.recipients if a not in tx.results]
            pending = tx.accepted if after_dot else undecided
        else:
            pending = tx.accepted
        assert tx.verdict is not None and tx.reply is not None
        # The id an ESP's SMTP endpoint gave the message, by which its webhooks report on it.
        provider_id = (
            provider_id_from_reply(tx.reply.text)
            if tx.verdict.outcome == Outcome.DELIVERED and tx.reply.stage == Stage.DOT
            else ""
        )
        for address in pending:
            tx.results[address] = RecipientResult(address, tx.verdict, tx.reply, provider_id)
        ordered = [tx.results[a] for a in envelope.recipients]
        return SendResult(tx.verdict, tx.reply, ordered)

    def _wire_form(self, conn: _SMTP, envelope: Envelope) -> Envelope | str:
        """The envelope as it goes to this relay, or why this relay cannot take it.

        8-bit data goes out as it is only to a relay that offered 8BITMIME;
        for any other it is made 7-bit (RFC 6152), on this cold path only.
        """
        if envelope.data.isascii() or conn.has_extn("8bitmime"):
            return envelope
        cached = self._seven_bit
        if cached is not None and cached[0] is envelope:
            return cached[1]
        wire: Envelope | str
        try:
            # DKIM signing, when added, must happen after this: it changes the body.
            data = to_seven_bit(bytes(envelope.data))
        except SevenBitError as exc:
            wire = f"the relay does not offer 8BITMIME and {exc}"
        else:
            wire = Envelope(envelope.sender, envelope.recipients, data, envelope.tracking_id)
        self._seven_bit = (envelope, wire)
        return wire

    @staticmethod
    def _needs_smtputf8(conn: _SMTP, envelope: Envelope) -> str:
        """Why this relay cannot take a non-ASCII address (RFC 6531), or nothing."""
        if envelope.sender.isascii() and all(r.isascii() for r in envelope.recipients):
            return ""
        if conn.has_extn("smtputf8"):
            return ""
        address = next(a for a in (envelope.sender, *envelope.recipients) if not a.isascii())
        return f"the relay does not offer SMTPUTF8, which the address {address!r} needs"

    @staticmethod
    def _not_for_this_relay(envelope: Envelope, reason: str) -> SendResult:
        """Refused before MAIL: another route may take it; if none is left, it fails."""
        verdict = Verdict(Outcome.ROUTE_FAULT, reason, if_last_route=Outcome.PERMANENT)
        reply = Reply(stage=Stage.MAIL, text=reason)
        return SendResult(
            verdict, reply, [RecipientResult(a, verdict, reply) for a in envelope.recipients]
        )

    def _exchange(self, conn: _SMTP, tx: _Transaction) -> SendResult | None:
        """One command at a time; each reply read before the next command."""
        envelope = tx.envelope
        code, msg = conn.mail(envelope.sender, self._mail_options(conn, envelope))
        if code != 250:
            return self._all(envelope, Stage.MAIL, code, msg, rset=True)
        tx.stage = Stage.RCPT
        for address in envelope.recipients:
            tx.rcpt_reply(address, *conn.rcpt(address))
        if not tx.accepted:
            self._rset()
            return tx.all_refused()
        tx.stage = Stage.DATA
        tx.end(*conn.send_data(envelope.data))
        if tx.reply is not None and tx.reply.stage == Stage.DATA:
            self._rset()
        return None

    @staticmethod
    def _can_pipeline(conn: _SMTP, envelope: Envelope) -> bool:
        # Non-ASCII addresses take the command-by-command path, which handles SMTPUTF8.
        return (
            conn.does_esmtp
            and conn.has_extn("pipelining")
            and envelope.sender.isascii()
            and all(r.isascii() for r in envelope.recipients)
        )

    @staticmethod
    def _too_large(conn: _SMTP, envelope: Envelope) -> str:
        limit = conn.esmtp_features.get("size", "") if conn.does_esmtp else ""
        if limit.isdigit() and 0 < int(limit) < len(envelope.data):
            return f"message of {len(envelope.data)} bytes exceeds the relay's SIZE {limit}"
        return ""

    def _commands(self, conn: _SMTP, envelope: Envelope) -> bytes:
        """MAIL, the RCPTs and DATA, as one pipelined group."""
        options = self._mail_options(conn, envelope)
        commands = [f"MAIL FROM:<{envelope.sender}>{''.join(' ' + o for o in options)}\r\n"]
        commands += [f"RCPT TO:<{address}>\r\n" for address in envelope.recipients]
        commands.append("DATA\r\n")
        return "".join(commands).encode("ascii")

    def _exchange_pipelined(
        self, conn: _SMTP, tx: _Transaction, announced: bool, following: Envelope | None
    ) -> SendResult | None:
        """MAIL, RCPTs and DATA in one write (RFC 2920), then the message; same results.

        ``announced``: the commands already went out with the previous content.
        ``following``: the next message, whose commands go out with this content.
        """
        envelope = tx.envelope
        conn.final_dot_sent = False
        if not announced:
            conn.send(self._commands(conn, envelope))
            self._run_meanwhile()
        mail_code, mail_msg = conn.getreply()
        tx.stage = Stage.RCPT
        # A 421 closes the session (RFC 5321 3.8): the replies after it never
        # come, and the ones not yet read are the closing reply, not a lost
        # connection (which would make a receiver's throttling a route fault).
        closing = (mail_code, mail_msg) if mail_code == 421 else None
        rcpt_replies = []
        for _ in envelope.recipients:
            reply = closing or conn.getreply()
            rcpt_replies.append(reply)
            if reply[0] == 421:
                closing = reply
        tx.stage = Stage.DATA
        data_code, data_msg = closing or conn.getreply()
        if closing is not None:
            self.close()
            if mail_code != 250:
                return self._all(envelope, Stage.MAIL, mail_code, mail_msg, rset=False)
            # Recipients accepted before the 421 were not sent to: they share its fate.
            tx.stage = Stage.RCPT
            for address, reply in zip(envelope.recipients, rcpt_replies, strict=True):
                tx.rcpt_reply(address, *(closing if reply[0] in (250, 251) else reply))
            last = _reply(Stage.RCPT, *closing)
            verdict = _classify(Stage.RCPT, closing[0], last.text, last.enhanced)
            return SendResult(verdict, last, [tx.results[a] for a in envelope.recipients])
        if mail_code != 250:
            self._end_data(conn, data_code)
            return self._all(envelope, Stage.MAIL, mail_code, mail_msg, rset=True)
        tx.stage = Stage.RCPT
        for address, (code, msg) in zip(envelope.recipients, rcpt_replies, strict=True):
            tx.rcpt_reply(address, code, msg)
        if not tx.accepted:
            self._end_data(conn, data_code)
            self._rset()
            return tx.all_refused()
        tx.stage = Stage.DATA
        if data_code == 354:
            then = self._commands(conn, following) if following is not None else b""
            tx.end(*conn.send_body(envelope.data, then, self._run_meanwhile))
            # After a 421 the relay is closing: the caller reconnects first.
            if following is not None and tx.reply is not None and tx.reply.code != 421:
                self._announced = following
        else:
            tx.end(data_code, data_msg, Stage.DATA)
            self._rset()
        return None

    @staticmethod
    def _end_data(conn: _SMTP, data_code: int) -> None:
        """A relay that said 354 to DATA although nothing is to be sent gets an empty body."""
        if data_code == 354:
            conn.send(b".\r\n")
            conn.getreply()

    def _all(
        self, envelope: Envelope, stage: Stage, code: int, msg: bytes, *, rset: bool
    ) -> SendResult:
        reply = _reply(stage, code, msg)
        verdict = _classify(stage, code, reply.text, reply.enhanced)
        if rset:
            self._rset()
        return SendResult(
            verdict, reply, [RecipientResult(a, verdict, reply) for a in envelope.recipients]
        )

    def _mail_options(self, conn: _SMTP, envelope: Envelope) -> list[str]:
        options: list[str] = []
        if conn.does_esmtp:
            if conn.has_extn("size"):
                options.append(f"SIZE={len(envelope.data)}")
            if not envelope.data.isascii() and conn.has_extn("8bitmime"):
                options.append("BODY=8BITMIME")
            ascii_only = envelope.sender.isascii() and all(r.isascii() for r in envelope.recipients)
            if not ascii_only and conn.has_extn("smtputf8"):
                options.append("SMTPUTF8")
        return options

    def _rset(self) -> None:
        try:
            if self.conn is not None and self.conn.rset()[0] != 250:
                # The relay is closing (421) or lost track: the next message
                # starts a new session rather than fail on this one.
                self.close()
        except (OSError, smtplib.SMTPException):
            self.close()

    def close(self) -> None:
        conn, self.conn = self.conn, None
        announced, self._announced = self._announced, None
        if conn is None:
            return
        try:
            # With a message announced, the relay may be waiting for its
            # content: QUIT would be read as content. Closing without the final
            # dot makes the relay discard it.
            if conn.sock is not None and announced is None:
                conn.quit()
        except (OSError, smtplib.SMTPException):
            pass
        finally:
            conn.close()


def _describe(exc: BaseException) -> str:
    """A short description of an exception that can never contain a secret."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate verification failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc}"
    if isinstance(exc, smtplib.SMTPServerDisconnected) and isinstance(
        exc.__context__, TimeoutError
    ):
        # smtplib turns a timeout on send or receive into a "disconnect".
        return "timed out: the relay stopped answering (or reading)"
    if isinstance(exc, smtplib.SMTPServerDisconnected) and isinstance(
        exc.__context__, ReplyTooLong
    ):
        return str(exc.__context__)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
