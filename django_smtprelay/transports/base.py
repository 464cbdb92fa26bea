"""The transport interface: open, send one message to its recipients, close."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from ..replies import Outcome, Stage, Verdict


@dataclass
class Reply:
    """A server's answer (or the lack of one) at one stage."""

    stage: Stage
    code: int | None = None
    enhanced: str = ""
    text: str = ""
    exception: str = ""  # exception class name when there was no reply

    def __str__(self) -> str:
        parts = [str(p) for p in (self.code, self.enhanced, self.text) if p]
        return " ".join(parts) or self.exception


@dataclass
class RecipientResult:
    address: str
    verdict: Verdict
    reply: Reply
    # The provider's id for the accepted message (ESP API id, SMTP 250 id), if any.
    provider_message_id: str = ""


@dataclass
class SendResult:
    """The fate of one message over one route: overall and per recipient."""

    verdict: Verdict
    reply: Reply
    recipients: list[RecipientResult] = field(default_factory=list)

    @property
    def outcome(self) -> Outcome:
        return self.verdict.outcome


class Content(Protocol):
    """A message's bytes that need not be in memory at once (a large message,
    read from the database while it is sent). ``len()`` is its size in bytes."""

    def __len__(self) -> int: ...

    def isascii(self) -> bool: ...

    def chunks(self) -> Iterator[bytes]:
        """The bytes, in order, in pieces of bounded size."""
        ...

    def __bytes__(self) -> bytes: ...


@dataclass
class Envelope:
    sender: str
    recipients: list[str]
    # bytes, or Content for a large message: a transport that needs the
    # whole of it (a conversion, an HTTP API) takes bytes(data).
    data: bytes | Content
    # Our own id for the message (for one recipient, for that recipient:
    # ``tracking.smtprelay_id``), which an ESP echoes in its webhook events.
    tracking_id: str = ""


class TransportError(Exception):
    """The route failed before any message could be tried (connect, TLS, AUTH)."""

    def __init__(self, verdict: Verdict, reply: Reply) -> None:
        super().__init__(f"{verdict.reason}: {reply}")
        self.verdict = verdict
        self.reply = reply


class Transport(Protocol):
    """What the engine drives. A transport whose ``pipelines_messages`` is true
    also takes ``send(envelope, following=next_envelope, meanwhile=callback)``:
    the caller then sends ``next_envelope`` next on the same session, or closes
    it; ``callback`` is called once before ``send`` returns, while the relay
    works on ``envelope`` when it can be (the engine records the previous
    message's result then)."""

    def open(self) -> None: ...

    def send(self, envelope: Envelope) -> SendResult: ...

    def close(self) -> None: ...
