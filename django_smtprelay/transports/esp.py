"""An ESP's HTTP API as a route, through the backend django-anymail ships for it.

Each transport builds its own backend instance with the route's own options
(anymail's HTTP session is not thread-safe, and a session per route keeps
one route's credentials out of another's requests). Every option is passed
explicitly, so nothing comes from the site's global ``ANYMAIL`` settings.

The queued bytes are parsed back into the ``EmailMultiAlternatives`` the site
sent (:mod:`.mime`); an ESP that takes MIME (Amazon SES) gets the stored
bytes as they are. Each recipient's status in the ESP's answer becomes its
outcome, with the ESP's message id; errors become outcomes as in
:mod:`django_smtprelay.replies` (README, "ESP routes").
"""

from __future__ import annotations

import email
import email.policy
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from .. import esps
from ..exceptions import SMTPRelayError
from ..replies import (
    Outcome,
    Stage,
    Verdict,
    classify_esp_http,
    classify_esp_recipient,
    esp_route_fault,
)
from ..routing import RouteSpec
from ..tracking.ids import METADATA_KEY
from .answer_wait import hook_answers, while_waiting
from .base import Envelope, RecipientResult, Reply, SendResult, TransportError
from .mime import parse_message

logger = logging.getLogger("django_smtprelay.delivery")

# The most of an ESP's answer kept in an attempt record.
_REPLY_LIMIT = 500


class ESPTransport:
    """One route's session with its ESP's API."""

    # The engine's look-ahead: the previous result is recorded, and the next
    # message parsed, while the ESP works on this one.
    pipelines_messages = True
    # For an ESP whose backend posts with ``requests`` (all but Amazon SES),
    # that work runs on this thread once the request is sent and before its
    # answer is read (answer_wait.py): no other thread, whatever the ESP's
    # latency. For the others the request goes to a sending thread, which is
    # only worth it when the ESP takes a while to answer: handing a request
    # over and back costs about as much as the work it overlaps when the
    # answer comes at once (an API on the same host). Such a request is sent
    # from this thread while the ESP's answers (a running average) come
    # sooner than this, in seconds.
    overlap_from = 0.005

    def __init__(self, route: RouteSpec) -> None:
        self.route = route
        self.backend: Any = None
        self.is_open = False
        self.raw_mime = False
        # Whether the ESP takes anymail metadata: our id goes there (tracking).
        self.takes_metadata = False
        self._sender: ThreadPoolExecutor | None = None
        # The next message, parsed (and its request built) while the ESP
        # worked on the one before: (envelope, message, payload or None).
        self._ahead: tuple[Envelope, Any, Any] | None = None
        self._secrets: list[str] = []
        # A fault that ends the route for this session (credentials refused,
        # the ESP failing): the next open raises it, so the engine fails the
        # rest of the group over at once rather than trying each message.
        self._fault: TransportError | None = None
        # How long the ESP's answers take, a running average (seconds).
        self._answer_seconds = 0.0
        # The engine's work runs while a request waits for its answer (answer_wait.py).
        self._inline = False

    def __repr__(self) -> str:
        return f"<ESPTransport {self.route.name!r} {self.route.esp}>"

    # -- the session -----------------------------------------------------------

    def open(self) -> None:
        if self._fault is not None:
            raise self._fault
        route = self.route
        try:
            esp = esps.get(route.esp)
            options = route.esp_options()
            self._secrets = [
                str(options[o.name]) for o in esp.options if o.secret and options.get(o.name)
            ]
            esps.validate(route.esp, options)
            backend_class = esp.backend_class()
            takes_metadata = not esp.raw_mime and _takes_metadata(backend_class)
            kwargs = esps.backend_kwargs(esp, options, timeout=route.timeout)
            from anymail.backends.base_requests import AnymailRequestsBackend

            if issubclass(backend_class, AnymailRequestsBackend):
                kwargs["timeout"] = route.timeout
            if esp.raw_mime:
                backend_class = _raw_mime_backend(backend_class)
            backend = backend_class(**kwargs)
            # The site's ANYMAIL["SEND_DEFAULTS"] are for its own anymail
            # backend: a route sends the message as the site sent it.
            backend.send_defaults = {}
            backend.open()
            inline = isinstance(backend, AnymailRequestsBackend) and _speed_up(backend, route)
        except (SMTPRelayError, ImproperlyConfigured) as exc:
            reason = self._scrub(f"the route's ESP options cannot be used: {exc}")
            raise TransportError(
                esp_route_fault(reason, rule="esp_configuration"),
                Reply(Stage.CONNECT, text=reason, exception=type(exc).__name__),
            ) from None
        self.backend, self.is_open, self.raw_mime = backend, True, esp.raw_mime
        self.takes_metadata = takes_metadata
        self._inline = inline
        if not inline:
            self._sender = ThreadPoolExecutor(1, thread_name_prefix=f"smtprelay-{route.name}")

    def secrets(self) -> list[str]:
        """The route's secret option values (known once open): for masking, never for showing."""
        return list(self._secrets)

    def close(self) -> None:
        backend, self.backend, self.is_open = self.backend, None, False
        sender, self._sender, self._ahead = self._sender, None, None
        if sender is not None:
            sender.shutdown(wait=True)
        if backend is not None:
            try:
                backend.close()
            except Exception:
                logger.warning("Route %s: closing its ESP session failed", self.route.name)

    # -- one message -----------------------------------------------------------

    def send(
        self,
        envelope: Envelope,
        following: Envelope | None = None,
        meanwhile: Callable[[], None] | None = None,
    ) -> SendResult:
        """Send one message; while its request is out, run ``meanwhile`` (the engine
        records the previous result) and parse ``following`` (the next message)."""
        from anymail.exceptions import (
            AnymailAPIError,
            AnymailError,
            AnymailRecipientsRefused,
        )

        try:
            message = self._message(envelope)
        except Exception as exc:  # the parser is lenient; this is a bug, not a reply
            logger.exception("Route %s: a queued message could not be read back", self.route.name)
            reason = f"the queued message could not be read back ({_name(exc)})"
            verdict = esp_route_fault(reason, last=Outcome.PERMANENT, rule="esp_unreadable_message")
            return self._failed(
                envelope, verdict, Reply(Stage.API, text=reason, exception=_name(exc))
            )
        try:
            cancelled = not self._post(message, following, meanwhile)
        except AnymailRecipientsRefused:
            cancelled = False  # every recipient refused: their statuses say how
        except AnymailAPIError as exc:
            return self._failed(envelope, *self._api_error(exc))
        except (AnymailError, ImproperlyConfigured) as exc:
            # Refused before any request: the message cannot go this way.
            reason = self._scrub(f"the ESP cannot carry this message: {exc}")
            last = Outcome.TRANSIENT if isinstance(exc, ImproperlyConfigured) else Outcome.PERMANENT
            verdict = esp_route_fault(reason, last=last, rule="esp_message_unsupported")
            reply = Reply(Stage.API, text=reason, exception=_name(exc))
            return self._failed(envelope, verdict, reply)
        if cancelled:
            reason = "a receiver of anymail's pre_send signal cancelled the send"
            verdict = esp_route_fault(reason, last=Outcome.PERMANENT, rule="esp_cancelled")
            return self._failed(envelope, verdict, Reply(Stage.API, text=reason))
        return self._statuses(envelope, message)

    def _message(self, envelope: Envelope) -> Any:
        ahead = self._ahead
        if ahead is not None and ahead[0] is envelope:
            return ahead[1]
        self._ahead = None
        # An HTTP API takes the whole message: a large one kept in the database
        # (Content) is read now, one message at a time.
        raw = envelope.data if isinstance(envelope.data, bytes) else bytes(envelope.data)
        message = parse_message(raw, envelope.sender, envelope.recipients)
        if self.raw_mime:
            message.smtprelay_raw = raw  # sent as it is: nothing added
        elif self.takes_metadata and envelope.tracking_id:
            # The ESP echoes it in every event, so a webhook finds the
            # recipient by our id even without the ESP's message id.
            message.metadata = {METADATA_KEY: envelope.tracking_id}
        return message

    def _payload(self, message: Any) -> Any:
        """anymail's request for ``message``, as its ``_send`` builds it; None when a
        ``pre_send`` receiver cancelled the send. Built ahead (while the previous
        request was out) when nothing listens to ``pre_send``, which may change
        or cancel the message and so must run just before it is sent."""
        from anymail.message import AnymailStatus

        backend = self.backend
        ahead, self._ahead = self._ahead, None
        built = ahead[2] if ahead is not None and ahead[1] is message else None
        if built is not None and not _pre_send_listened(backend):
            return built
        message.anymail_status = AnymailStatus()
        if not backend.run_pre_send(message):
            return None
        return backend.build_message_payload(message, backend.send_defaults)

    def _look_ahead(self, following: Envelope) -> None:
        """Parse the next message and, where nothing may change it first, build its
        request. A failure here is left for that message's own send to report."""
        try:
            message = self._message(following)
        except Exception:
            self._ahead = None
            return
        payload = None
        if not _pre_send_listened(self.backend):
            from anymail.message import AnymailStatus

            try:
                message.anymail_status = AnymailStatus()
                payload = self.backend.build_message_payload(message, self.backend.send_defaults)
            except Exception:
                payload = None  # built again, and the error raised, when it is sent
        self._ahead = (following, message, payload)

    def _post(
        self,
        message: Any,
        following: Envelope | None,
        meanwhile: Callable[[], None] | None,
    ) -> bool:
        """What anymail's ``_send`` does for one message, with the engine's work
        done while the request waits for its answer.

        While the request is out, the previous result is recorded
        (``meanwhile``) and the next message's request prepared, so that only
        the request itself stands between one message and the next: on this
        thread once the request is sent (``requests`` backends), else with
        the request on the sending thread when the ESP is slow to answer.
        Signals and the answer's parsing stay on the caller's thread; the
        backend (its HTTP session) is used by one thread at a time.
        """
        backend = self.backend
        payload = self._payload(message)
        if payload is None:
            return False
        sent = time.monotonic()
        if self._inline:
            work = None
            if meanwhile is not None or following is not None:
                work = self._while_waiting(meanwhile, following)
            with while_waiting(work):
                response = backend.post_to_esp(payload, message)
        elif (
            (meanwhile is None and following is None)
            or self._answer_seconds < self.overlap_from
            or self._sender is None
        ):
            # The engine records the previous result itself after this send
            # (``meanwhile`` not called), and the next message is read at its turn.
            response = backend.post_to_esp(payload, message)
        else:
            request = self._sender.submit(backend.post_to_esp, payload, message)
            # Let the sending thread have the interpreter until its request is
            # out (it gives it back when it waits for the answer): else this
            # thread's work below holds it, and the request leaves only when
            # that work is done or the switch interval (5 ms) runs out.
            time.sleep(0)
            try:
                if meanwhile is not None:
                    meanwhile()
                if following is not None:
                    self._look_ahead(following)
            finally:
                response = request.result()
        self._answer_seconds += (time.monotonic() - sent - self._answer_seconds) / 8
        message.anymail_status.esp_response = response
        statuses = backend.parse_recipient_status(response, payload, message)
        message.anymail_status.set_recipient_status(statuses)
        backend.run_post_send(message)
        backend.raise_for_recipient_status(message.anymail_status, response, payload, message)
        return True

    def _while_waiting(
        self, meanwhile: Callable[[], None] | None, following: Envelope | None
    ) -> Callable[[], None]:
        """The engine's work for the time a request waits for its answer. It runs
        inside ``requests``, so it never raises: ``meanwhile`` keeps its own
        failure for the engine, and a look-ahead that fails is done again at
        that message's turn."""

        def work() -> None:
            try:
                if meanwhile is not None:
                    meanwhile()
                if following is not None:
                    self._look_ahead(following)
            except Exception:
                self._ahead = None
                logger.exception("Route %s: work while a request was out failed", self.route.name)

        return work

    def _statuses(self, envelope: Envelope, message: Any) -> SendResult:
        status = getattr(message, "anymail_status", None)
        by_address = {
            address.lower(): rs for address, rs in (getattr(status, "recipients", {}) or {}).items()
        }
        results = []
        for address in envelope.recipients:
            rs = by_address.get(address.lower())
            name = getattr(rs, "status", None)
            verdict = classify_esp_recipient(name)
            reply = Reply(Stage.API, text=f"{name or 'unknown'}: {verdict.reason}")
            provider_id = str(getattr(rs, "message_id", "") or "")
            results.append(RecipientResult(address, verdict, reply, provider_id))
        accepted = next((r for r in results if r.verdict.outcome is Outcome.DELIVERED), None)
        overall = accepted or results[0]
        return SendResult(overall.verdict, overall.reply, results)

    def _failed(self, envelope: Envelope, verdict: Verdict, reply: Reply) -> SendResult:
        if verdict.outcome is Outcome.ROUTE_FAULT and verdict.rule in _ENDS_SESSION:
            self._fault = TransportError(verdict, reply)
            self.close()
        return SendResult(
            verdict, reply, [RecipientResult(a, verdict, reply) for a in envelope.recipients]
        )

    def _api_error(self, exc: Exception) -> tuple[Verdict, Reply]:
        """An error from the ESP's API: by its HTTP status, or how the request failed."""
        status, text = _http_status(exc)
        if status is not None:
            verdict = classify_esp_http(status, text)
            text = self._scrub(text)[:_REPLY_LIMIT]
            return verdict, Reply(Stage.API, code=status, text=f"{verdict.reason}: {text}")
        cause = exc.__cause__ or exc.__context__
        detail = f"{_name(cause or exc)}: {self._scrub(str(cause or ''))[:200]}".rstrip(": ")
        if _before_request(cause):
            verdict = Verdict(
                Outcome.ROUTE_FAULT,
                f"could not reach the ESP's API ({detail})",
                session_over=True,
                if_last_route=Outcome.TRANSIENT,
                rule="esp_unreachable",
            )
            return verdict, Reply(Stage.CONNECT, text=verdict.reason, exception=_name(cause))
        # Sent, but no answer that says what became of it: the ESP may have it.
        verdict = Verdict(
            Outcome.UNCERTAIN,
            f"no usable answer after the request was sent ({detail})",
            session_over=True,
            rule="esp_no_answer",
        )
        return verdict, Reply(Stage.API, text=verdict.reason, exception=_name(cause or exc))

    def _scrub(self, text: str) -> str:
        """``text`` without the route's secrets (an ESP may quote the key it refused)."""
        for secret in self._secrets:
            if len(secret) >= 4:
                text = text.replace(secret, "[secret]")
        return text


# Route faults after which the route is done for this session.
_ENDS_SESSION = frozenset({"esp_auth_failed", "esp_server_error", "esp_not_found"})


def _name(exc: BaseException | None) -> str:
    return type(exc).__name__ if exc is not None else ""


def _http_status(exc: Exception) -> tuple[int | None, str]:
    """The HTTP status and body text of an ESP's error answer, if there was one."""
    status = getattr(exc, "status_code", None)
    response = getattr(exc, "response", None)
    if status is not None and response is not None and hasattr(response, "text"):
        return int(status), str(response.text or getattr(response, "reason", "") or "")
    if isinstance(response, dict):  # boto3's parsed error answer (Amazon SES)
        meta = response.get("ResponseMetadata") or {}
        error = response.get("Error") or {}
        if meta.get("HTTPStatusCode"):
            text = " ".join(str(error.get(k, "")) for k in ("Code", "Message")).strip()
            return int(meta["HTTPStatusCode"]), text
    if status is not None:
        return int(status), ""
    return None, ""


def _before_request(cause: BaseException | None) -> bool:
    """True when the request never reached the ESP (no connection made)."""
    if cause is None:
        return False
    import requests

    if isinstance(cause, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(cause, requests.exceptions.ConnectionError):
        reason = cause.args[0] if cause.args else None
        inner = getattr(reason, "reason", reason)
        return type(inner).__name__ in ("NewConnectionError", "NameResolutionError") or isinstance(
            inner, ConnectionRefusedError
        )
    try:
        from botocore.exceptions import ConnectTimeoutError, EndpointConnectionError
    except ImportError:
        return False
    return isinstance(cause, (ConnectTimeoutError, EndpointConnectionError)) and not isinstance(
        cause, _boto_read_errors()
    )


def _boto_read_errors() -> tuple[type, ...]:
    from botocore.exceptions import ConnectionClosedError, ReadTimeoutError

    return (ReadTimeoutError, ConnectionClosedError)


def _speed_up(backend: Any, route: RouteSpec) -> bool:
    """Work while a request waits, and the environment read once, for a
    ``requests`` backend's session; whether the work runs inline. Both only
    save time: if either cannot be set up, the session works as anymail made it."""
    session = getattr(backend, "session", None)
    if session is None:
        return False
    try:
        if _proxied(session, getattr(backend, "api_url", "") or ""):
            # Through a proxy, requests connects with a proxy manager of its own,
            # which the hook does not reach: the sending thread overlaps instead.
            _environment_once(session)
            return False
        inline = hook_answers(session)
        _environment_once(session)
    except Exception:
        logger.warning("Route %s: its HTTP session is used as it is", route.name, exc_info=True)
        return False
    return inline


def _proxied(session: Any, url: str) -> bool:
    """Whether ``session`` sends requests for ``url`` through a proxy."""
    from requests.utils import get_environ_proxies

    if session.proxies:
        return True
    return bool(session.trust_env and url and get_environ_proxies(url))


def _environment_once(session: Any) -> None:
    """Make ``session`` (a ``requests.Session``) read the environment's proxy and
    CA bundle settings once per URL and settings, not for every request.

    ``requests`` reads them for each request (the proxy variables twice, by
    scanning every environment variable), which was a tenth of the CPU of a
    send to an ESP on the same host. A route's session lasts one batch at
    most, and the values it reads are the ones ``requests`` would read: an
    environment changed while a batch is under way is seen from the next one.
    """
    merge = session.merge_environment_settings
    known: dict[tuple, dict[str, Any]] = {}

    def merged(url: Any, proxies: Any, stream: Any, verify: Any, cert: Any) -> dict[str, Any]:
        try:
            key = (
                url,
                tuple(sorted((proxies or {}).items())),
                stream,
                verify,
                cert,
                session.trust_env,
                tuple(sorted((session.proxies or {}).items())),
                session.stream,
                session.verify,
                session.cert,
            )
            found = known.get(key)
        except TypeError:  # a value that cannot be a key: read as requests does
            return merge(url, proxies, stream, verify, cert)
        if found is None:
            found = merge(url, dict(proxies) if proxies is not None else None, stream, verify, cert)
            if len(known) < 16:
                known[key] = found
        # A copy each time: requests passes these on, and nothing may change the cached one.
        proxies_found = found["proxies"]
        return {**found, "proxies": dict(proxies_found) if proxies_found is not None else None}

    session.merge_environment_settings = merged


def _pre_send_listened(backend: Any) -> bool:
    from anymail.signals import pre_send

    return pre_send.has_listeners(type(backend))


@cache
def _takes_metadata(backend_class: type) -> bool:
    """Whether the ESP's payload takes anymail ``metadata`` (Postal's does not; anymail
    would refuse the message as an unsupported feature)."""
    import inspect
    import sys

    from anymail.backends.base import BasePayload

    module = sys.modules.get(backend_class.__module__)
    payloads = [
        cls
        for _name, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, BasePayload) and cls.__module__ == backend_class.__module__
    ]
    return any(cls.set_metadata is not BasePayload.set_metadata for cls in payloads)


def _raw_mime_backend(backend_class: type) -> type:
    """``backend_class`` (Amazon SES) sending a queued message's stored bytes as they are."""
    from anymail.backends.amazon_ses import AmazonSESV2SendEmailPayload
    from anymail.utils import UNSET

    class StoredBytesPayload(AmazonSESV2SendEmailPayload):
        def init_payload(self) -> None:
            super(AmazonSESV2SendEmailPayload, self).init_payload()
            self.all_recipients = []
            self.mime_message = email.message_from_bytes(
                self.message.smtprelay_raw, policy=email.policy.compat32
            )

        def generate_raw_message(self) -> bytes:
            return self.message.smtprelay_raw

    class StoredBytesBackend(backend_class):  # type: ignore[misc, valid-type]
        def build_message_payload(self, message: Any, defaults: dict) -> Any:
            if getattr(message, "smtprelay_raw", None) is not None and (
                getattr(message, "template_id", UNSET) is UNSET
            ):
                return StoredBytesPayload(message, defaults, self)
            return super().build_message_payload(message, defaults)

    return StoredBytesBackend
