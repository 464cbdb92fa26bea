"""The SMTP conversation: aiosmtpd hooks, with every database and cache call
run in the listener's threads (the ORM is synchronous, the server asyncio)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session
from django.db import DatabaseError

from ..exceptions import InvalidMessageError
from . import intake, limits
from .accounts import Account, Activity, authenticate
from .settings import submission_settings
from .writer import GroupWriter, Threads

logger = logging.getLogger("django_smtprelay.submission")

MAX_RECIPIENTS = 1000
MAX_CREDENTIAL_BYTES = 1024
# Passwords hashed at once: PBKDF2 keeps a core busy for each.
AUTH_THREADS = 2
# How long a login waits for the checks under way from its address.
LOGIN_WAIT_SECONDS = 30

TEMPFAIL_DB = "451 4.3.0 The queue is unavailable (database error); try again later"
TEMPFAIL = "451 4.3.0 Temporary failure, try again later"
SHUTTING_DOWN = "421 4.3.2 Service shutting down; try again later"


def client_address(session: Session) -> str:
    peer = session.peer
    return str(peer[0]) if isinstance(peer, tuple) else str(peer or "")


def account_of(session: Session) -> Account | None:
    return getattr(session, "smtprelay_account", None)


def _size_param(options: list[str]) -> int | None:
    for option in options:
        name, _, value = option.partition("=")
        if name.upper() == "SIZE" and value.isdigit():
            return int(value)
    return None


class SubmissionHandler:
    """aiosmtpd handler: who may log in, send as whom, and what is queued."""

    def __init__(self, threads: Threads, hostname: str) -> None:
        self.threads = threads
        # Logins' own threads (their lookups and password hashing), apart from
        # the threads that store messages; stopped with them by the listener.
        self.auth_threads = Threads(AUTH_THREADS, name="smtprelay-auth")
        self.writer = GroupWriter(threads, self._stored)
        self.hostname = hostname
        self.activity = Activity()
        self.depth = limits.QueueDepth()
        self.draining = False

    # -- EHLO: PIPELINING (aiosmtpd reads pipelined commands in order) -------

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list
    ) -> list[str]:
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    # -- AUTH PLAIN / LOGIN --------------------------------------------------

    async def auth_PLAIN(self, server: SMTP, args: list[str]) -> AuthResult:
        if len(args) == 1:
            blob = await server.challenge_auth("")
            if not isinstance(blob, bytes):
                return AuthResult(success=False, handled=True)
        else:
            try:
                blob = base64.b64decode(args[1], validate=True)
            except (binascii.Error, ValueError):
                await server.push("501 5.5.2 Cannot decode base64")
                return AuthResult(success=False, handled=True)
        parts = blob.split(b"\x00")
        if len(parts) != 3:
            await server.push("501 5.5.2 AUTH PLAIN wants authzid NUL username NUL password")
            return AuthResult(success=False, handled=True)
        return await self._login(server, parts[1], parts[2])

    async def auth_LOGIN(self, server: SMTP, args: list[str]) -> AuthResult:
        if len(args) == 1:
            username = await server.challenge_auth("Username:")
        else:
            try:
                username = base64.b64decode(args[1], validate=True)
            except (binascii.Error, ValueError):
                await server.push("501 5.5.2 Cannot decode base64")
                return AuthResult(success=False, handled=True)
        if not isinstance(username, bytes):
            return AuthResult(success=False, handled=True)
        password = await server.challenge_auth("Password:")
        if not isinstance(password, bytes):
            return AuthResult(success=False, handled=True)
        return await self._login(server, username, password)

    async def _login(self, server: SMTP, username_b: bytes, password_b: bytes) -> AuthResult:
        session = server.session
        client = client_address(session)
        if len(username_b) + len(password_b) > MAX_CREDENTIAL_BYTES:
            await server.push("501 5.5.2 Credentials too long")
            return AuthResult(success=False, handled=True)
        username = username_b.decode("utf-8", "replace")
        password = password_b.decode("utf-8", "replace")
        # All on the login threads: hashing a password takes a few hundred
        # milliseconds of PBKDF2, and a flood of bad logins must not hold up
        # the threads that store the messages of the clients logged in.
        run = self.auth_threads.run
        try:
            place = await self._reserve(client)
            if place == "blocked":
                logger.warning("Refused a login from %s: too many failed logins", client)
                await server.push(
                    "421 4.7.0 Too many failed logins from this address; try again later"
                )
                server.transport.close()
                return AuthResult(success=False, handled=True)
            if place == "busy":
                raise TimeoutError(f"no place for a login check in {LOGIN_WAIT_SECONDS} s")
        except Exception:
            logger.exception("Could not check a login from %s", client)
            await server.push("454 4.7.0 Temporary authentication failure; try again later")
            return AuthResult(success=False, handled=True)
        try:
            account = await run(authenticate, username, password)
            if account is None:
                failures = await run(limits.login_failed, client)
            else:
                await run(limits.login_released, client)
        except Exception:
            logger.exception("Could not check a login from %s", client)
            with contextlib.suppress(Exception):
                await run(limits.login_released, client)  # not the client's failure
            await server.push("454 4.7.0 Temporary authentication failure; try again later")
            return AuthResult(success=False, handled=True)
        if account is None:
            # The username is logged, never the password.
            logger.warning(
                "Failed login for %r from %s (%d in the window)", username, client, failures
            )
            await asyncio.sleep(limits.failure_delay(failures))
            return AuthResult(success=False, handled=False)
        session.smtprelay_account = account
        logger.info("Login of %r from %s", account.username, client)
        return AuthResult(success=True, auth_data=account.username)

    async def _reserve(self, client: str) -> str:
        """A place for a login check (see limits.login_reserve), waiting while
        the checks under way for this address could still use up its limit."""
        deadline = asyncio.get_running_loop().time() + LOGIN_WAIT_SECONDS
        while True:
            place = await self.auth_threads.run(limits.login_reserve, client)
            if place != "busy" or asyncio.get_running_loop().time() >= deadline:
                return place
            await asyncio.sleep(0.05)

    # -- the transaction ------------------------------------------------------

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list
    ) -> str:
        if self.draining:
            return SHUTTING_DOWN
        account = account_of(session)
        if account is not None:
            if not account.may_send_as(address):
                await self._reject(account, session)
                return (
                    f"553 5.7.1 Sender <{address}> is not allowed for this account; "
                    "use one of its allowed senders"
                )
            size = _size_param(options)
            if size and account.max_message_size and size > account.max_message_size:
                await self._reject(account, session)
                return self._too_large(size, account.max_message_size)
        limited = account is not None and (account.per_minute or account.per_hour)
        if not limited and submission_settings.max_queue_depth is None:
            refusal = None  # nothing to look up: no trip to a thread
        else:
            refusal = await self._limits(account)
        if refusal:
            return refusal
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def _limits(self, account: Account | None) -> str | None:
        try:
            return await self.threads.run(self._mail_limits, account)
        except DatabaseError:
            logger.exception("The queue's depth could not be read")
            return TEMPFAIL_DB
        except Exception:  # the cache of the rate limits, say: never its text
            logger.exception("The sending limits could not be read")
            return TEMPFAIL

    def _mail_limits(self, account: Account | None) -> str | None:
        depth = self.depth.over()
        if depth is not None:
            return f"452 4.3.1 The queue holds {depth} messages or more; try again later"
        if account is not None:
            unit = limits.over_rate(account.pk, account.per_minute, account.per_hour)
            if unit:
                limit = account.per_minute if unit == "minute" else account.per_hour
                return f"450 4.7.1 This account may send {limit} messages per {unit}; try later"
        return None

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list
    ) -> str:
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return f"452 4.5.3 At most {MAX_RECIPIENTS} recipients per message"
        if "@" not in address or len(address) > 254:
            return f"553 5.1.3 Recipient <{address[:80]}> is not a valid address"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        account = account_of(session)
        crlf = content.count(b"\r\n")
        if content.count(b"\n") != crlf or content.count(b"\r") != crlf:
            # RFC 5321 2.3.8; relays that take a bare LF or CR as a line end
            # would read another message into it (SMTP smuggling).
            return "550 5.6.11 Bare CR or LF in the message: end every line with CRLF"
        if account is not None:
            if account.max_message_size and len(content) > account.max_message_size:
                await self._reject(account, session)
                return self._too_large(len(content), account.max_message_size)
            for address in intake.from_header_addresses(content):
                if not account.may_send_as(address):
                    await self._reject(account, session)
                    return (
                        f"550 5.7.1 From address <{address}> is not allowed for this "
                        "account; use one of its allowed senders"
                    )
        tls = session.ssl is not None or server.transport.get_extra_info("sslcontext") is not None
        transaction = intake.Transaction(
            mail_from=envelope.mail_from or "",
            rcpt_tos=list(envelope.rcpt_tos),
            content=content,
            helo=session.host_name or "",
            client=client_address(session),
            hostname=self.hostname,
            protocol=intake.protocol(
                esmtp=session.extended_smtp,
                tls=tls,
                authenticated=account is not None,
                utf8=envelope.smtp_utf8,
            ),
            account=account,
        )
        try:
            pk = await self.writer.store(transaction)
        except InvalidMessageError as exc:
            if account is not None:
                await self._reject(account, session)
            return f"554 5.6.0 {' '.join(str(exc).split())[:400]}"
        except DatabaseError:
            logger.exception("A message from %s could not be stored", transaction.client)
            return TEMPFAIL_DB
        except Exception:
            # Never the exception's text: it is internal, and aiosmtpd's own
            # answer (500) would make the client give up on a passing fault.
            logger.exception("A message from %s could not be stored", transaction.client)
            return TEMPFAIL
        return f"250 2.0.0 Queued as {pk}"

    def _stored(self, transactions: list[intake.Transaction]) -> None:
        """In the writer's thread, after a commit: the queue's depth and the accounts' use."""
        for transaction in transactions:
            self.depth.added()
            account = transaction.account
            if account is not None:
                self.activity.record(account.pk, transaction.client, accepted=True)
                limits.count_message(account.pk, account.per_minute, account.per_hour)
        self.flush_activity()

    def flush_activity(self) -> None:
        if self.activity.due():
            try:
                self.activity.flush()
            except DatabaseError:
                logger.warning("Could not record submission accounts' use", exc_info=True)

    async def _reject(self, account: Account, session: Session) -> None:
        self.activity.record(account.pk, client_address(session), accepted=False)

    @staticmethod
    def _too_large(size: int, limit: int) -> str:
        return f"552 5.3.4 The message is {size} bytes; this account's limit is {limit} bytes"
