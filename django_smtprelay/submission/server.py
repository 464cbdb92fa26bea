"""Listening sockets, TLS, signals and an orderly stop for the submission listener."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
import ssl
import time
from collections.abc import Callable
from typing import Any

from aiosmtpd.smtp import SMTP

from .handler import SHUTTING_DOWN, SubmissionHandler
from .settings import ListenAddress, submission_settings
from .writer import Threads

logger = logging.getLogger("django_smtprelay.submission")


def tls_context(files: tuple[str, str]) -> ssl.SSLContext:
    """A server context with the configured chain and key (TLS 1.2 at least)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(*files)
    return context


class SubmissionSMTP(SMTP):
    """aiosmtpd's server, told per connection who may skip what: a trusted
    network needs no login, loopback may log in without TLS when the setting
    allows it, and implicit TLS counts as TLS."""

    def __init__(self, handler: SubmissionHandler, listener: Listener, implicit_tls: bool, **kw):
        super().__init__(handler, **kw)
        self.listener = listener
        self.implicit_tls = implicit_tls

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.transport is None
        super().connection_made(transport)
        if not first:  # the same connection after STARTTLS
            return
        self.listener.connections.add(self)
        peer = transport.get_extra_info("peername")
        try:
            ip = ipaddress.ip_address(str(peer[0]).split("%")[0])
        except (TypeError, ValueError, IndexError):
            return
        if self.implicit_tls:
            self._auth_require_tls = False
        if ip.is_loopback and submission_settings.auth_without_tls_on_loopback:
            self._auth_require_tls = False
        if any(ip in net for net in self.listener.trusted):
            self._auth_required = False
            self.session.smtprelay_trusted = True

    def connection_lost(self, error: Exception | None) -> None:
        self.listener.connections.discard(self)
        super().connection_lost(error)

    @property
    def in_transaction(self) -> bool:
        return self.envelope is not None and self.envelope.mail_from is not None


class Listener:
    """All the listening sockets of one process, their connections and their stop."""

    def __init__(self, addresses: list[ListenAddress], threads: int = 4) -> None:
        self.addresses = addresses
        self.threads = Threads(threads)
        self.handler = SubmissionHandler(self.threads, submission_settings.hostname)
        self.handler.writer.in_transaction = self._in_transaction
        self.trusted = submission_settings.trusted_networks
        self.files = submission_settings.tls_files
        self.context = tls_context(self.files) if self.files else None
        self.servers: list[asyncio.AbstractServer] = []
        self.connections: set[SubmissionSMTP] = set()
        self.bound: list[ListenAddress] = []
        self._activity: asyncio.Task[None] | None = None
        if self.context is None and any(a.mode == "tls" for a in addresses):
            raise ValueError(
                "An implicit TLS address (tls://) needs SMTPRELAY['SUBMISSION_TLS_CERT_FILE'] "
                "and ['SUBMISSION_TLS_KEY_FILE']; set them or listen with starttls:// only."
            )

    def _in_transaction(self) -> int:
        return sum(1 for conn in self.connections if conn.in_transaction)

    def _factory(self, implicit_tls: bool) -> Callable[[], SubmissionSMTP]:
        def make() -> SubmissionSMTP:
            return SubmissionSMTP(
                self.handler,
                self,
                implicit_tls,
                hostname=self.handler.hostname,
                ident="django-smtprelay",
                tls_context=None if implicit_tls else self.context,
                data_size_limit=submission_settings.max_message_size,
                enable_SMTPUTF8=True,
                decode_data=False,
                auth_required=True,
                auth_require_tls=True,
                timeout=submission_settings.timeout,
            )

        return make

    async def start(self) -> list[ListenAddress]:
        loop = asyncio.get_running_loop()
        for address in self.addresses:
            implicit = address.mode == "tls"
            server = await loop.create_server(
                self._factory(implicit),
                host=address.host,
                port=address.port,
                ssl=self.context if implicit else None,
                reuse_address=True,
            )
            self.servers.append(server)
            for sock in server.sockets:
                host, port = sock.getsockname()[:2]
                self.bound.append(ListenAddress(address.mode, host, port))
        self._activity = asyncio.create_task(self._record_activity())
        return self.bound

    async def _record_activity(self) -> None:
        """Write the accounts' use once it is due even when no further message
        comes to carry it (a message only flushes what is due when it is stored):
        the admin's last use and volume stay at most a few seconds behind."""
        activity = self.handler.activity
        while True:
            await asyncio.sleep(activity.interval)
            if not activity.due():
                continue
            try:
                await self.threads.run(self.handler.flush_activity)
            except Exception:  # logged, and tried again: the loop must outlive any fault
                logger.exception("Could not record submission accounts' use")

    def reload_tls(self) -> None:
        """Read the certificate and key again (SIGHUP): new connections get them."""
        if self.context is None or self.files is None:
            logger.info("SIGHUP: no TLS certificate configured, nothing to reload")
            return
        try:
            self.context.load_cert_chain(*self.files)
        except (OSError, ssl.SSLError):
            logger.exception("SIGHUP: could not reload %s; the old certificate stays", self.files)
            return
        logger.info("SIGHUP: reloaded the TLS certificate %s", self.files[0])

    async def stop(self, grace: float) -> None:
        """Stop listening, let transactions in progress finish (up to ``grace``
        seconds), say 421 to the idle clients, then close what is left."""
        self.handler.draining = True
        if self._activity is not None:
            self._activity.cancel()
        for server in self.servers:
            server.close()
        deadline = time.monotonic() + grace
        while self.connections:
            for conn in list(self.connections):
                if not conn.in_transaction or time.monotonic() >= deadline:
                    _close(conn)
            await asyncio.sleep(0.05)
        for server in self.servers:
            await server.wait_closed()
        await asyncio.get_running_loop().run_in_executor(None, self._finish)

    def _finish(self) -> None:
        self.threads.shutdown()
        self.handler.auth_threads.shutdown()
        try:
            self.handler.activity.flush()
        except Exception:
            logger.warning("Could not record submission accounts' use", exc_info=True)


def _close(conn: SubmissionSMTP) -> None:
    transport = conn.transport
    if transport is None:
        conn.listener.connections.discard(conn)
        return
    with contextlib.suppress(Exception):  # already closing
        transport.write(f"{SHUTTING_DOWN}\r\n".encode())
    transport.close()
    conn.listener.connections.discard(conn)


async def serve(
    addresses: list[ListenAddress],
    *,
    threads: int = 4,
    ready: Callable[[list[ListenAddress]], Any] | None = None,
) -> None:
    """Listen until SIGTERM or SIGINT; SIGHUP reloads the TLS certificate."""
    listener = Listener(addresses, threads)
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    bound = await listener.start()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    loop.add_signal_handler(signal.SIGHUP, listener.reload_tls)
    if ready is not None:
        ready(bound)
    await stopping.wait()
    logger.info("Stopping: finishing the transactions in progress")
    await listener.stop(submission_settings.shutdown_grace)
