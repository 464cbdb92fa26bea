"""One SMTP session with one address of one MX host, with opportunistic or required TLS.

The exchange itself (pipelining, 8BITMIME, SMTPUTF8, SIZE, per-recipient
replies) is :class:`~.smtp.SMTPTransport`'s; only the opening differs from
a relay's: the address is dialled, the MX host's name is the TLS server name,
and STARTTLS is used whenever offered. With opportunistic TLS a certificate
that does not verify does not stop delivery (most MX certificates do not
match the host name): the session is opened again without verifying, and
:attr:`MXSession.tls` says so for the attempt.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from dataclasses import replace

from ..conf import app_settings
from ..replies import Outcome, Stage, Verdict, classify_exception
from ..routing import RouteSpec
from .base import Reply, TransportError
from .smtp import _SMTP, SMTPTransport, _classify, _describe, _reply, tls_context


class CertificateRejected(Exception):
    """The MX host's certificate did not verify; ``str()`` says why."""


class MXSession(SMTPTransport):
    """An SMTP session with one MX address, reused for the batch's messages to it."""

    pipelines_messages = False

    def __init__(
        self, route: RouteSpec, host: str, address: str, port: int, *, verify: bool, tls: bool
    ) -> None:
        super().__init__(replace(route, host=host, port=port, username=""))
        self.mx_host, self.address, self.port = host, address, port
        self.verify = verify  # verify the certificate (required, or tried first)
        self.use_tls = tls  # False: a TLS handshake with this host failed before
        self.tls = ""  # what the session got: "TLS verified", "TLS not verified (...)", ...
        self.verified = False
        self.sent = 0  # transactions on this session (a reused one may have gone stale)

    def __repr__(self) -> str:
        return f"<MXSession {self.mx_host} [{self.address}]:{self.port} {self.tls or 'closed'}>"

    @property
    def where(self) -> str:
        return f"{self.mx_host} [{self.address}]"

    def open(self, *, unverified_because: str = "", require: bool = False) -> None:
        """Connect, EHLO, STARTTLS when offered; raise TransportError or CertificateRejected.

        ``require``: only a verified TLS session will do.
        """
        route = self.route
        hostname = route.ehlo_hostname or app_settings.ehlo_hostname or socket.getfqdn()
        stage = Stage.CONNECT
        try:
            conn = self.conn = _SMTP(local_hostname=hostname, timeout=route.timeout)
            conn._host = self.mx_host  # the TLS server name (smtplib takes it from here)
            code, msg = conn.connect(self.address, self.port)
            self.sessions += 1
            if code != 220:
                self._fail(Stage.GREETING, code, msg)
            stage = Stage.EHLO
            code, msg = conn.ehlo()
            if code != 250:
                code, msg = conn.helo()
                if code != 250:
                    self._fail(Stage.EHLO, code, msg)
            stage = Stage.STARTTLS
            if not self.use_tls or not conn.has_extn("starttls"):
                why = "STARTTLS not offered" if self.use_tls else "an earlier TLS handshake failed"
                if require:
                    self._refuse(stage, f"{self.where}: {why}, and verified TLS is required")
                self.tls = f"no TLS ({why})"
                return
            context = tls_context(self.verify, app_settings.tls_ca_file)
            try:
                code, msg = conn.starttls(context=context)
            except ssl.SSLCertVerificationError as exc:
                self.close()
                raise CertificateRejected(exc.verify_message or str(exc)) from None
            if code != 220:
                if require:
                    self._fail(stage, code, msg)
                self.tls = f"no TLS (STARTTLS refused: {_reply(stage, code, msg)})"
                return
            stage = Stage.EHLO
            code, msg = conn.ehlo()
            if code != 250:
                self._fail(stage, code, msg)
            self.verified = self.verify
            self.tls = "TLS verified" if self.verify else f"TLS not verified ({unverified_because})"
        except (TransportError, CertificateRejected):
            self.close()
            raise
        except smtplib.SMTPResponseException as exc:
            self.close()
            stage = Stage.GREETING if stage == Stage.CONNECT else stage
            reply = _reply(stage, exc.smtp_code, exc.smtp_error)
            raise TransportError(_classify(stage, exc.smtp_code, reply.text), reply) from None
        except (OSError, smtplib.SMTPException) as exc:
            if stage == Stage.CONNECT and self.conn is not None and self.conn.connected:
                stage = Stage.GREETING
            self.close()
            reply = Reply(stage=stage, text=_describe(exc), exception=type(exc).__name__)
            verdict = classify_exception(stage, exc)
            if stage == Stage.STARTTLS and isinstance(exc, ssl.SSLError):
                verdict = Verdict(Outcome.ROUTE_FAULT, f"TLS handshake failed: {_describe(exc)}")
                raise TLSFailed(verdict, reply) from None
            raise TransportError(verdict, reply) from None


class TLSFailed(TransportError):
    """The TLS handshake failed (not the certificate): opportunistic TLS retries in plaintext."""
