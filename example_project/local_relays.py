"""Two local stand-ins for SMTP relays, on 127.0.0.1 only.

- :class:`RecordingRelay` accepts mail (aiosmtpd) and writes each message to
  a mailbox folder as an ``.eml`` file; it refuses recipients whose local part
  is in ``unknown_users`` with ``550 5.1.1``, as a real relay refuses an
  unknown user.
- :class:`RefusingRelay` holds a port that refuses every connection (bound,
  never listening), as a relay that is down does.

Both take their port from the kernel and keep it bound while they run, so no
other program can take it in between.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import secrets
import socket
import threading
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

HOST = "127.0.0.1"


def _bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((HOST, 0))
    return sock


@dataclass(frozen=True)
class Received:
    """One message the recording relay accepted."""

    queue_id: str
    message_id: str
    recipients: tuple[str, ...]
    path: Path


class _Handler:
    def __init__(self, relay: RecordingRelay) -> None:
        self.relay = relay

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.partition("@")[0].lower() in self.relay.unknown_users:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        return self.relay.store(envelope)


class RecordingRelay:
    """An SMTP server that accepts and records mail, in a thread of its own."""

    def __init__(
        self, mailbox: Path, *, unknown_users: frozenset[str] = frozenset({"nobody"})
    ) -> None:
        self.mailbox = mailbox
        self.unknown_users = unknown_users
        self.received: list[Received] = []
        self.port = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None

    def start(self) -> int:
        """Listen on 127.0.0.1 on a free port; return the port."""
        self.mailbox.mkdir(parents=True, exist_ok=True)
        sock = _bound_socket()
        self.port = sock.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        handler = _Handler(self)
        self._server = self._loop.run_until_complete(
            self._loop.create_server(
                lambda: SMTP(handler, hostname="relay-up.localhost", loop=self._loop), sock=sock
            )
        )
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="recording-relay", daemon=True
        )
        self._thread.start()
        return self.port

    def store(self, envelope: Envelope) -> str:
        """Write one accepted message to the mailbox; the reply names its queue id."""
        data: Any = envelope.original_content or envelope.content or b""
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        headers = BytesHeaderParser().parsebytes(data)
        with self._lock:
            queue_id = secrets.token_hex(5).upper()  # unique across runs, like a real queue id
            path = self.mailbox / f"{queue_id}.eml"
            path.write_bytes(data)
            self.received.append(
                Received(
                    queue_id=queue_id,
                    message_id=str(headers.get("Message-ID", "")).strip(),
                    recipients=tuple(envelope.rcpt_tos),
                    path=path,
                )
            )
        return f"250 2.0.0 Ok: queued as {queue_id}"

    def find(self, message_id: str) -> Received | None:
        """What this relay received with the given Message-ID header, if anything."""
        with self._lock:
            return next((r for r in self.received if r.message_id == message_id), None)

    def stop(self) -> None:
        loop, server = self._loop, self._server
        if loop is None or server is None:
            return

        async def close() -> None:
            server.close()
            await server.wait_closed()

        with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
            asyncio.run_coroutine_threadsafe(close(), loop).result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=5)
        loop.close()
        self._loop = self._server = self._thread = None


class RefusingRelay:
    """A port on 127.0.0.1 where every connection is refused: a relay that is down."""

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self.port = 0

    def start(self) -> int:
        """Reserve a free port without listening on it; return the port."""
        self._sock = _bound_socket()
        self.port = self._sock.getsockname()[1]
        return self.port

    def stop(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
