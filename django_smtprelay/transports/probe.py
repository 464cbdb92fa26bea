"""Trying a route by hand: connect (and send one message), recording the dialogue.

The admin's "Test connection" and "Send a test message" run here. They go
through the route's own transport, so they see what a delivery would: the
same TLS checks, the same AUTH rules. Nothing is queued or recorded, and
route health is left alone: a test is not traffic.

The dialogue is every line the client wrote and the server answered, in
order, with the secrets masked as they are recorded: the command that
carries AUTH credentials shows ``AUTH PLAIN ******``, the replies to AUTH
challenges show ``******``, and the password (plain or base64) is replaced
wherever else it might show, such as a server echoing it back.
"""

from __future__ import annotations

import ast
import base64
import re
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..exceptions import SMTPRelayError
from ..replies import Outcome
from ..routing import RouteSpec
from .base import Envelope, Reply, TransportError
from .smtp import SMTPTransport

MASK = "******"
_MIN_MASKED = 6
# A dialogue is bounded: a relay may send hundreds of EHLO lines.
MAX_LINES = 400
MAX_LINE_CHARS = 1000
_AUTH = re.compile(r"^(AUTH\s+\S+)(\s+\S+)?", re.IGNORECASE)


@dataclass(frozen=True)
class Line:
    """One line of the dialogue: ``side`` is "client", "server" or "note"."""

    side: str
    text: str


class Dialogue:
    """Records smtplib's debug output as client and server lines, secrets masked."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.lines: list[Line] = []
        self.truncated = False
        self._in_auth = False
        forms: set[str] = set()
        for secret in secrets:
            # AUTH lines are masked whole whatever the secret; elsewhere only a
            # secret long enough not to be mistaken for ordinary text ("250")
            # is replaced, since masking every "250" would give the password away.
            if len(secret) >= _MIN_MASKED:
                forms.add(secret)
                forms.add(base64.b64encode(secret.encode("utf-8")).decode("ascii"))
        # Longest first, so a base64 form is masked whole, not in part.
        self._secrets = sorted(forms, key=len, reverse=True)

    def __call__(self, kind: str, *args: Any) -> None:
        """smtplib's ``_print_debug(kind, *args)``."""
        if kind == "connect: to" and args and isinstance(args[0], tuple):
            host, port = args[0]
            self.note(f"connecting to {host} port {port}")
        elif kind == "send:" and len(args) == 1:
            data = _literal(args[0])
            text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
            for line in text.splitlines():
                self._client(line)
        elif kind == "reply:" and len(args) == 1:
            data = _literal(args[0])
            text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
            self._server(text.rstrip("\r\n"))

    def note(self, text: str) -> None:
        self._add("note", text)

    def _client(self, line: str) -> None:
        match = _AUTH.match(line)
        if match:
            self._in_auth = True
            line = match.group(1).upper() + (f" {MASK}" if match.group(2) else "")
        elif self._in_auth:
            line = MASK  # a response to an AUTH challenge: credentials
        self._add("client", line)

    def _server(self, line: str) -> None:
        if self._in_auth and not line.startswith("334"):
            self._in_auth = False
        self._add("server", line)

    def mask(self, text: str) -> str:
        """``text`` with every known form of a secret replaced."""
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text

    def _add(self, side: str, text: str) -> None:
        if len(self.lines) >= MAX_LINES:
            self.truncated = True
            return
        text = self.mask(text)
        if len(text) > MAX_LINE_CHARS:
            text = text[:MAX_LINE_CHARS] + " ..."
        self.lines.append(Line(side, text))


@dataclass
class ProbeResult:
    """What a route test found: whether it worked, why not, and the dialogue."""

    ok: bool
    summary: str
    outcome: str = ""  # replies.Outcome value; empty when it worked
    stage: str = ""
    reply: str = ""
    seconds: float = 0.0
    tls: str = ""
    lines: list[Line] = field(default_factory=list)
    truncated: bool = False


def check_connection(route: RouteSpec) -> ProbeResult:
    """Connect, EHLO, STARTTLS and AUTH as the route says, then QUIT; no mail is sent."""
    return _run(route, None)


def send_test_message(route: RouteSpec, sender: str, recipient: str, data: bytes) -> ProbeResult:
    """Send ``data`` from ``sender`` to ``recipient`` through the route, now."""
    return _run(route, Envelope(sender, [recipient], data))


def _run(route: RouteSpec, envelope: Envelope | None) -> ProbeResult:
    if route.kind == "anymail":
        return _run_esp(route, envelope)
    if route.kind == "mx":
        return _run_mx(route, envelope)
    if route.kind != "smtp":
        return ProbeResult(False, f"route {route.name!r} is not an SMTP route ({route.kind})")
    dialogue = Dialogue(_secrets(route))
    transport = SMTPTransport(route)
    transport.dialogue = dialogue
    started = time.monotonic()
    try:
        result = _exchange(transport, envelope, dialogue, started)
    finally:
        transport.close()
    if any(line.side == "server" for line in dialogue.lines):
        dialogue.note("connection closed")
    result.truncated = dialogue.truncated
    return result


def _exchange(
    transport: SMTPTransport, envelope: Envelope | None, dialogue: Dialogue, started: float
) -> ProbeResult:
    route = transport.route
    try:
        transport.open()
    except TransportError as exc:
        verdict = exc.verdict
        return _result(dialogue, started, False, "", verdict.outcome, verdict.reason, exc.reply)
    tls = _tls(transport)
    if envelope is None:
        summary = "connected" + (f", {tls}" if tls else "")
        if route.username:
            summary += f", logged in as {route.username}"
        return _result(dialogue, started, True, summary + "; no mail sent", tls=tls)
    result = transport.send(envelope)
    if result.outcome == Outcome.DELIVERED:
        summary = f"the relay accepted the message for {envelope.recipients[0]}"
        return _result(dialogue, started, True, summary, reply=result.reply, tls=tls)
    verdict = result.verdict
    return _result(dialogue, started, False, "", verdict.outcome, verdict.reason, result.reply, tls)


def _run_esp(route: RouteSpec, envelope: Envelope | None) -> ProbeResult:
    """An ESP route: build its backend (no request), and send the message if there is one."""
    from .esp import ESPTransport

    transport = ESPTransport(route)
    dialogue = Dialogue()
    started = time.monotonic()
    where = route.esp_endpoint or "its default endpoint"
    try:
        try:
            transport.open()
        except TransportError as exc:
            verdict = exc.verdict
            return _result(dialogue, started, False, "", verdict.outcome, verdict.reason, exc.reply)
        dialogue = Dialogue(transport.secrets())
        dialogue.note(f"built the {route.esp} backend with the route's options, for {where}")
        if envelope is None:
            return _result(dialogue, started, True, "the route's options are complete; no request")
        dialogue.note(f"sending the message to the {route.esp} API")
        result = transport.send(envelope)
        dialogue.note(f"answer: {result.reply}")
        if result.outcome == Outcome.DELIVERED:
            summary = f"the ESP accepted the message for {envelope.recipients[0]}"
            return _result(dialogue, started, True, summary, reply=result.reply)
        verdict = result.verdict
        return _result(dialogue, started, False, "", verdict.outcome, verdict.reason, result.reply)
    finally:
        transport.close()


def _run_mx(route: RouteSpec, envelope: Envelope | None) -> ProbeResult:
    """A direct-to-MX route: the message to the recipient domain's MX hosts, as delivered."""
    from .mx import MXTransport

    dialogue = Dialogue()
    started = time.monotonic()
    if envelope is None:
        why = (
            "a direct-to-MX route has no server of its own: send a test message to an "
            "address at the domain to try its MX hosts"
        )
        return _result(dialogue, started, False, why)
    transport = MXTransport(route)
    domain = envelope.recipients[0].rpartition("@")[2]
    try:
        transport.open()
        dialogue.note(f"looking up the MX hosts and MTA-STS policy of {domain}")
        result = transport.send(envelope)
        dialogue.note(f"answer: {result.reply}")
    finally:
        transport.close()
    if result.outcome == Outcome.DELIVERED:
        summary = f"an MX host of {domain} accepted the message for {envelope.recipients[0]}"
        return _result(dialogue, started, True, summary, reply=result.reply)
    verdict = result.verdict
    return _result(dialogue, started, False, "", verdict.outcome, verdict.reason, result.reply)


def _secrets(route: RouteSpec) -> list[str]:
    """The strings no dialogue line may show: the password, and the PLAIN blob."""
    secrets = [route.password]
    if route.username:
        try:
            password = route.login_password()
        except SMTPRelayError:  # the transport refuses it, and says so
            password = ""
        secrets += [password, f"\0{route.username}\0{password}"]
    return [s for s in secrets if s]


def _result(
    dialogue: Dialogue,
    started: float,
    ok: bool,
    summary: str,
    outcome: Outcome | None = None,
    reason: str = "",
    reply: Reply | None = None,
    tls: str = "",
) -> ProbeResult:
    return ProbeResult(
        ok=ok,
        summary=dialogue.mask(summary or reason),
        outcome=outcome.value if outcome is not None else "",
        stage=str(reply.stage) if reply is not None else "",
        reply=dialogue.mask(str(reply)) if reply is not None else "",
        seconds=time.monotonic() - started,
        tls=tls,
        lines=dialogue.lines,
        truncated=dialogue.truncated,
    )


def _tls(transport: SMTPTransport) -> str:
    sock = transport.conn.sock if transport.conn is not None else None
    if not isinstance(sock, ssl.SSLSocket):
        return ""
    checked = "verified" if transport.route.verify_certificate else "NOT verified"
    return f"{sock.version()}, certificate {checked}"


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
