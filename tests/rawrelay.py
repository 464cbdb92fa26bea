"""A loopback relay that misbehaves as scripted, for the faults aiosmtpd cannot make.

Each connection runs ``script(conn)`` on its own thread with a plain socket:
it may say nothing, send garbage, close mid-line, stall, or fail TLS. Every
line the server read is kept (``lines``), so a test can prove what the client
never sent (AUTH after a failed certificate check, say).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Callable, Iterator

__all__ = ["Conn", "RawRelay", "raw_relays", "smtp_dialogue"]

Script = Callable[["Conn"], None]


class Conn:
    """One accepted connection, as the script sees it."""

    def __init__(self, owner: RawRelay, sock: socket.socket, session: int) -> None:
        self.owner = owner
        self.sock = sock
        self.session = session  # 1-based
        self._file = sock.makefile("rb")

    def say(self, reply: str | bytes) -> None:
        """Send ``reply`` as it is (bytes) or as one CRLF-ended line (str)."""
        data = reply if isinstance(reply, bytes) else reply.encode() + b"\r\n"
        self.sock.sendall(data)

    def line(self) -> bytes:
        """The next line from the client (b"" once it closed)."""
        line = self._file.readline(65536)
        if line:
            self.owner._record(line)
        return line

    def read_data(self) -> bytes:
        """The message content up to the final dot."""
        data = []
        while (line := self._file.readline(65536)) not in (b".\r\n", b""):
            data.append(line)
        return b"".join(data)

    def starttls(self, context: ssl.SSLContext) -> bool:
        """Take the client's TLS handshake; False if it failed."""
        try:
            self.sock = context.wrap_socket(self.sock, server_side=True)
        except (ssl.SSLError, OSError):
            return False
        self._file = self.sock.makefile("rb")
        return True

    def hold(self, seconds: float = 30.0) -> None:
        """Say and read nothing, until ``seconds`` pass or the server stops."""
        self.owner._stopping.wait(seconds)


def smtp_dialogue(
    conn: Conn,
    *,
    ehlo: str = "250-raw.test\r\n250-PIPELINING\r\n250 8BITMIME",
    on_data: Callable[[Conn], None] | None = None,
    on_dot: Callable[[Conn, bytes], None] | None = None,
) -> None:
    """An honest relay's side of the session; ``on_data`` replaces the 354 stage,
    ``on_dot`` the reply to the final dot (it gets the content)."""
    conn.say("220 raw.test ESMTP")
    while line := conn.line():
        verb = line[:4].upper()
        if verb in (b"EHLO", b"HELO"):
            conn.say(ehlo if verb == b"EHLO" else "250 raw.test")
        elif verb == b"DATA":
            if on_data is not None:
                on_data(conn)
                return
            conn.say("354 End data with <CR><LF>.<CR><LF>")
            data = conn.read_data()
            conn.owner._received(data)
            if on_dot is not None:
                on_dot(conn, data)
                return
            conn.say("250 2.0.0 Ok: queued")
        elif verb == b"QUIT":
            conn.say("221 2.0.0 Bye")
            return
        else:  # MAIL, RCPT, RSET, NOOP
            conn.say("250 2.0.0 Ok")


class RawRelay:
    """A TCP server on 127.0.0.1 that runs ``script`` for each connection."""

    def __init__(self, script: Script, *, tls: ssl.SSLContext | None = None) -> None:
        self.script = script
        self.tls = tls  # implicit TLS: the handshake comes first
        self.lines: list[bytes] = []
        self.messages: list[bytes] = []
        self.sessions = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._socks: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return f"<RawRelay 127.0.0.1:{self.port} sessions={self.sessions}>"

    def _record(self, line: bytes) -> None:
        with self._lock:
            self.lines.append(line)

    def _received(self, data: bytes) -> None:
        with self._lock:
            self.messages.append(data)

    def commands(self) -> list[str]:
        """The verbs the client sent, in order."""
        with self._lock:
            verbs = [line.split(b" ", 1)[0].strip() for line in self.lines]
        return [verb.decode("ascii", "replace") for verb in verbs]

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.sessions += 1
                session = self.sessions
                self._socks.append(sock)
            threading.Thread(target=self._serve, args=(sock, session), daemon=True).start()

    def _serve(self, sock: socket.socket, session: int) -> None:
        try:
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_side=True)
            self.script(Conn(self, sock, session))
        except (OSError, ssl.SSLError):
            pass  # the client went away: what the test checks is the client's side
        finally:
            sock.close()

    def stop(self) -> None:
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() call
        self._listener.close()
        with self._lock:
            for sock in self._socks:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
        self._thread.join(5)


def raw_relays() -> Iterator[Callable[..., RawRelay]]:
    """For a fixture: ``start(script, tls=None)`` starts a relay; all stop after the yield."""
    relays: list[RawRelay] = []

    def start(script: Script, **options: ssl.SSLContext | None) -> RawRelay:
        relay = RawRelay(script, **options)
        relays.append(relay)
        return relay

    yield start
    for relay in relays:
        relay.stop()
