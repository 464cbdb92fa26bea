"""What an SMTP reply (or a failure to get one) means for delivery.

One table maps the stage, the basic code (RFC 5321), the enhanced code
(RFC 3463) and the reply text, or the exception, to an :class:`Outcome`.
"""

from __future__ import annotations

import enum
import re
import socket
import ssl
from dataclasses import dataclass


class Stage(str, enum.Enum):
    CONNECT = "connect"
    GREETING = "greeting"
    EHLO = "ehlo"
    STARTTLS = "starttls"
    AUTH = "auth"
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"
    DOT = "dot"  # the reply to the final "." after the message body

    def __str__(self) -> str:
        return self.value


class Outcome(str, enum.Enum):
    DELIVERED = "delivered"
    TRANSIENT = "transient"  # retry this recipient later
    PERMANENT = "permanent"  # this recipient fails
    ROUTE_FAULT = "route_fault"  # the relay is the problem: fail over now
    UNCERTAIN = "uncertain"  # lost after the final dot: the server may have it

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Verdict:
    """The outcome of one reply, and why."""

    outcome: Outcome
    reason: str
    throttle: bool = False  # the route asked us to slow down
    split: bool = False  # send the remaining recipients in another transaction


_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")


def parse_enhanced(text: str) -> tuple[str, str]:
    """Split an enhanced status code (``5.1.1``) off the front of a reply text."""
    m = _ENHANCED.match(text or "")
    if not m:
        return "", (text or "").strip()
    return f"{m.group(1)}.{m.group(2)}.{m.group(3)}", text[m.end() :].strip()


_AUTH_CODES = {530, 534, 535, 538}


def classify(stage: Stage, code: int | None, text: str = "", enhanced: str = "") -> Verdict:
    """Classify a reply ``code``/``text`` received at ``stage``."""
    if not enhanced:
        enhanced, text = parse_enhanced(text)
    if code is None:
        return Verdict(Outcome.ROUTE_FAULT, "no reply")
    if 200 <= code < 400:
        return Verdict(Outcome.DELIVERED, "accepted")
    if code == 421:
        return Verdict(Outcome.ROUTE_FAULT, "service not available (421)", throttle=True)
    if stage in (Stage.CONNECT, Stage.GREETING, Stage.EHLO, Stage.STARTTLS, Stage.AUTH):
        return Verdict(Outcome.ROUTE_FAULT, f"relay refused the session at {stage} ({code})")
    if code in _AUTH_CODES or (enhanced.startswith("5.7.0") and stage == Stage.AUTH):
        return Verdict(Outcome.ROUTE_FAULT, f"authentication failed ({code})")
    if 500 <= code <= 504:
        return Verdict(Outcome.ROUTE_FAULT, f"protocol error ({code})")
    if 400 <= code < 500:
        return Verdict(Outcome.TRANSIENT, f"temporary failure ({code})")
    if stage == Stage.MAIL:
        # A sender refused by the relay is the route's problem, not the recipient's.
        return Verdict(Outcome.ROUTE_FAULT, f"sender refused ({code})")
    return Verdict(Outcome.PERMANENT, f"permanent failure ({code})")


def classify_exception(stage: Stage, exc: BaseException, *, after_dot: bool = False) -> Verdict:
    """Classify a failure that produced no reply: refused, timed out, TLS, dropped."""
    if after_dot:
        return Verdict(Outcome.UNCERTAIN, f"connection lost after the final dot: {_name(exc)}")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return Verdict(Outcome.ROUTE_FAULT, "TLS certificate verification failed")
    if isinstance(exc, ssl.SSLError):
        return Verdict(Outcome.ROUTE_FAULT, "TLS error")
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return Verdict(Outcome.ROUTE_FAULT, f"timed out at {stage}")
    if isinstance(exc, ConnectionRefusedError):
        return Verdict(Outcome.ROUTE_FAULT, "connection refused")
    return Verdict(Outcome.ROUTE_FAULT, f"connection failed at {stage}: {_name(exc)}")


def _name(exc: BaseException) -> str:
    return type(exc).__name__
