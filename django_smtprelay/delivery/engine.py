"""Claim, route, send, classify: the engine's own loop (results are written by ``results``)."""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from django.utils import timezone

from ..conf import app_settings
from ..health import RouteHealthService
from ..health.ratelimit import RateLimits
from ..models import DeliveryAttempt, Message, Recipient, Suppression
from ..models.bulk import strings_in
from ..replies import Outcome, Verdict
from ..routing import Router, RouteSpec
from ..transports import get_transport
from ..transports.base import Envelope, Reply, SendResult, Transport, TransportError
from .results import Flush, ResultWriter, attempt_preparer
from .state import OPEN_STATES, RunReport, _BatchTimes, _Msg, _Part, _Rcpt

logger = logging.getLogger("django_smtprelay.delivery")

Attempt = DeliveryAttempt.Outcome
# Outcomes that show the route did its job (the recipient's fate aside).
ROUTE_WORKS = (Outcome.DELIVERED, Outcome.TRANSIENT, Outcome.PERMANENT)


# Longer waits for a route's rate limit end the session: the rest of the batch
# is deferred to when the route has room, so a lease is never held idle.
MAX_RATE_WAIT = 2.0


def _limits(route: RouteSpec) -> RateLimits | None:
    """The route's own limits; None falls back to SMTPRELAY["RATE_LIMITS"][name]."""
    values = (route.max_per_second, route.max_per_minute, route.max_per_hour)
    if not any(values) and not route.max_connections:
        return None
    return RateLimits(
        per_second=route.max_per_second,
        per_minute=route.max_per_minute,
        per_hour=route.max_per_hour,
        max_connections=route.max_connections,
    )


# One shared (never mutated) value, so a flush converts it to JSON once, not per attempt.
_NO_RECIPIENTS: list[dict[str, str]] = []


def _envelope(part: _Part) -> Envelope:
    return Envelope(part.msg.sender, list(part.open_addresses), part.msg.data)


def _route_outcome(result: SendResult) -> Outcome:
    """What one send says about the route (not the recipients)."""
    outcomes = {r.verdict.outcome for r in result.recipients}
    if Outcome.DELIVERED in outcomes:
        return Outcome.DELIVERED
    return result.verdict.outcome


class _Applied:
    """One send's result, applied to the batch's state later: while the relay
    works on the next message (``Transport.send(meanwhile=...)``), or at once."""

    def __init__(
        self,
        engine: DeliveryEngine,
        group: list[_Part],
        part: _Part,
        route: RouteSpec,
        result: SendResult,
        started_at: datetime,
        took: float,
    ) -> None:
        self.engine, self.group, self.part = engine, group, part
        self.args = (route, result, started_at, took)
        self.failure: BaseException | None = None

    def settle(self) -> None:
        engine = self.engine
        engine._apply(self.part, *self.args)
        if engine._extra_parts:  # split recipients go next, in this same session
            self.group.extend(engine._extra_parts)
            engine._parts.extend(engine._extra_parts)
            engine._extra_parts = []

    def settle_quietly(self) -> None:
        """``settle`` for a transport to call mid-exchange: a failure (a database
        error, say) waits for the exchange to end; ``raise_failure`` raises it."""
        try:
            self.settle()
        except BaseException as exc:  # raised again by raise_failure
            self.failure = exc

    def raise_failure(self) -> None:
        if self.failure is not None:
            raise self.failure


def _settle(waiting: _Applied | None) -> None:
    """Apply ``waiting`` now, if there is one; None, for ``waiting = _settle(waiting)``."""
    if waiting is not None:
        waiting.settle()


class DeliveryEngine:
    """Delivers due messages. Tests and the ``smtprelay_send`` command drive it directly."""

    def __init__(
        self,
        *,
        router: Router | None = None,
        clock: Callable[[], datetime] = timezone.now,
        batch_size: int | None = None,
        transport_factory: Callable[[RouteSpec], Transport] = get_transport,
        rng: random.Random | None = None,
    ) -> None:
        self._router = router
        self.clock = clock
        self.batch_size = batch_size or app_settings.batch_size
        self.transport_factory = transport_factory
        self.rng = rng or random.Random()  # jitter and load sharing, not security

    def run(
        self, message_ids: Iterable[int] | None = None, *, max_batches: int | None = None
    ) -> RunReport:
        """Claim and deliver batches until nothing (of ``message_ids``) is due."""
        report = RunReport()
        queryset = Message.objects.all()
        if message_ids is not None:
            queryset = queryset.filter(pk__in=list(message_ids))
        self._writer = ResultWriter(report, self.clock, self.backoff)
        batches = 0
        try:
            while max_batches is None or batches < max_batches:
                token, ids = queryset.claim(self.batch_size, app_settings.lease, now=self.clock())
                if not ids:
                    break
                batches += 1
                self._deliver(token, ids, report)
        finally:
            writer, self._writer = self._writer, None
            writer.close()
        return report

    # -- one batch -----------------------------------------------------------

    _writer: ResultWriter | None = None

    def deliver_batch(self, token: uuid.UUID, ids: list[int]) -> RunReport:
        """Deliver the claimed ``ids`` held by ``token``; results are written on return."""
        report = RunReport()
        self._writer = ResultWriter(report, self.clock, self.backoff)
        try:
            self._deliver(token, ids, report)
        finally:
            writer, self._writer = self._writer, None
            writer.close()
        return report

    def _deliver(self, token: uuid.UUID, ids: list[int], report: RunReport) -> None:
        self.report = report
        report.claimed += len(ids)
        self.token = token
        self._pending = Flush(token)
        self._prepare_attempt = attempt_preparer()
        self._since_flush = 0
        self._flushed_at = self._leased_at = time.monotonic()
        self._flush_every = app_settings.flush_every
        self._lease_seconds = app_settings.lease.total_seconds()
        router = self._router or Router()
        self.health = RouteHealthService(clock=self.clock, rng=self.rng)
        parts = self._parts = self._load(token, ids, router)
        dead: set[str] = set()
        self._extra_parts: list[_Part] = []
        while True:
            groups: dict[str, tuple[RouteSpec, list[_Part]]] = {}
            for part in parts:
                if part.done:
                    continue
                while part.routes and part.routes[0].name in dead:
                    part.routes.pop(0)
                if not part.open_addresses or not part.routes:
                    self._finish(part)
                    continue
                route = part.routes[0]
                groups.setdefault(route.name, (route, []))[1].append(part)
            if not groups:
                break
            for route, group in groups.values():
                if not self._send_group(route, group):
                    dead.add(route.name)
        self._flush()

    def _flush(self) -> None:
        # Also every third of a lease, so a slow relay never outlives the lease.
        self._flushed_at = time.monotonic()
        flush, self._pending, self._since_flush = self._pending, Flush(self.token), 0
        # Renew the lease once a third of it is gone (not at every flush: that
        # rewrites every row of the batch).
        if time.monotonic() - self._leased_at > self._lease_seconds / 3:
            flush.renew_lease = True
            self._leased_at = time.monotonic()
        assert self._writer is not None
        self._writer.submit(flush)

    def _load(self, token: uuid.UUID, ids: list[int], router: Router) -> list[_Part]:
        # By the lease token, not the ids: the same rows (``ids`` are the
        # token's), without an IN list of hundreds of parameters.
        rows = (
            Message.objects.filter(lease_token=token)
            .order_by("priority", "next_attempt_at", "pk")
            .values_list(
                "pk",
                "from_email",
                "content__raw",
                "attempt_count",
                "route_hint",
                "retry_route",
                "sender_domain",
                "from_domain",
                "size",
            )
        )
        rcpts: dict[int, dict[str, _Rcpt]] = {}
        for pk, message_id, address, status in Recipient.objects.filter(
            message__lease_token=token
        ).values_list("pk", "message_id", "address", "status"):
            rcpts.setdefault(message_id, {})[address] = _Rcpt(pk, address, status)
        suppressed = self._suppressed(rcpts)
        parts: list[_Part] = []
        times = _BatchTimes(ids)
        for pk, sender, raw, attempts, hint, retry, s_dom, f_dom, size in rows:
            msg = _Msg(pk, sender, bytes(raw), times, attempts, rcpts.get(pk, {}))
            open_rcpts = [r for r in msg.rcpts.values() if r.status in OPEN_STATES]
            for rcpt in open_rcpts:
                if rcpt.address.lower() in suppressed:
                    rcpt.status, rcpt.changed = Recipient.Status.SUPPRESSED, True
                    rcpt.reply = "suppressed: " + suppressed[rcpt.address.lower()]
                    msg.last_reply = rcpt.reply
            open_rcpts = [r for r in open_rcpts if r.status in OPEN_STATES]
            # Recipients that the same routes may take travel together; the
            # others are split into their own parts (and SMTP transactions).
            by_routes: dict[tuple[str, ...], _Part] = {}
            by_domain: dict[str, list[RouteSpec]] = {}  # one match per domain, not per recipient
            for rcpt in open_rcpts:
                domain = rcpt.address.rpartition("@")[2] if router.any_recipient_rules else ""
                if domain not in by_domain:
                    by_domain[domain] = router.matching(
                        hint,
                        sender_domain=s_dom,
                        from_domain=f_dom,
                        recipient_domain=domain,
                        size=size,
                    )
                routes = by_domain[domain]
                key = tuple(r.name for r in routes)
                if key not in by_routes:
                    ordered = self.health.order(routes) if len(routes) > 1 else list(routes)
                    # Greylisting is passed only by coming back to the same relay.
                    ordered.sort(key=lambda r: r.name != retry)
                    by_routes[key] = _Part(msg, ordered)
                by_routes[key].open_addresses.append(rcpt.address)
            for part in by_routes.values():
                if not part.routes:
                    if router.too_large_everywhere(size):
                        msg.last_reply = f"{size} bytes is larger than every route accepts"
                        part.last_fault = Verdict(
                            Outcome.ROUTE_FAULT, msg.last_reply, if_last_route=Outcome.PERMANENT
                        )
                    else:
                        msg.last_reply = f"no enabled route takes this message (route {hint!r})"
            msg.parts_left = len(by_routes)
            if not by_routes:
                self._pending.finished.append(msg)
            parts.extend(by_routes.values())
        return parts

    def _suppressed(self, rcpts: dict[int, dict[str, _Rcpt]]) -> dict[str, str]:
        addresses = {
            a.lower() for per in rcpts.values() for a, r in per.items() if r.status in OPEN_STATES
        }
        if not addresses:
            return {}
        return dict(
            Suppression.objects.filter(strings_in(sorted(addresses), "address")).values_list(
                "address", "reason"
            )
        )

    def _send_group(self, route: RouteSpec, group: list[_Part]) -> bool:
        """Send ``group`` over one session of ``route``; False if the route is down."""
        health, limits = self.health, _limits(route)
        if not health.usable(route.name):
            state = health.state(route.name)
            self._skip(group, route, f"circuit open until {state.until}: {state.reason}")
            return False
        slot = health.open_session(route.name, limits)
        if slot is None:
            self._skip(group, route, "all of its connections are in use")
            return False
        transport = self.transport_factory(route)
        paced = health.paced(route.name, limits)
        # A transport that pipelines messages is told which message comes next,
        # so it can send that one's commands with this one's content (not while
        # paced: the next send may have to wait), and records the previous
        # message's result while the relay works on this one.
        lookahead = getattr(transport, "pipelines_messages", False)
        announced: tuple[_Part, Envelope] | None = None
        # The result of the last send, not yet applied (see _Applied).
        waiting: _Applied | None = None
        good, good_latency = 0, 0.0  # reported together: a few cache operations a session
        index = 0
        try:
            while index < len(group) or waiting is not None:
                if index >= len(group):
                    # Settling the last result may split off recipients to send next.
                    waiting = _settle(waiting)
                    continue
                part = group[index]
                index += 1
                if paced:
                    waiting = _settle(waiting)
                    wait = health.before_send(route.name, limits)
                    if wait > MAX_RATE_WAIT:
                        self._hold(group[index - 1 :], route, wait)
                        return True
                    if wait:
                        time.sleep(wait)
                        if health.before_send(route.name, limits):
                            self._hold(group[index - 1 :], route, MAX_RATE_WAIT)
                            return True
                if not getattr(transport, "is_open", False):
                    waiting = _settle(waiting)
                    started = time.monotonic()
                    try:
                        transport.open()
                        self.report.sessions += 1
                    except TransportError as exc:
                        health.after_result(
                            route.name,
                            exc.verdict.outcome,
                            exc.verdict.throttle,
                            time.monotonic() - started,
                            exc.verdict.reason,
                            limits=limits,
                        )
                        for failed in group[index - 1 :]:
                            self._route_fault(failed, route, exc, started)
                        return False
                started_at, started = self.clock(), time.monotonic()
                if announced is not None and announced[0] is part:
                    envelope = announced[1]
                else:
                    envelope = _envelope(part)
                announced = None
                if lookahead:
                    if not paced and index < len(group) and transport.is_open:
                        announced = (group[index], _envelope(group[index]))
                    result = transport.send(
                        envelope,
                        following=announced[1] if announced else None,
                        meanwhile=waiting.settle_quietly if waiting is not None else None,
                    )
                    if waiting is not None:
                        waiting.raise_failure()
                else:
                    result = transport.send(envelope)
                waiting = None
                took = time.monotonic() - started
                if result.verdict.session_over:  # e.g. 421: the server is closing
                    transport.close()
                outcome = _route_outcome(result)
                if outcome in ROUTE_WORKS and not result.verdict.throttle:
                    good, good_latency = good + 1, good_latency + took
                else:
                    # Settle the session's good sends first, so a slow-down is
                    # measured against everything sent so far, this one included.
                    health.record_successes(
                        route.name, good, good_latency, limits=limits, counted=paced
                    )
                    good, good_latency = 0, 0.0
                    if not paced:
                        health.limiter(route.name, limits).count_sends(1, self.clock())
                    health.after_result(
                        route.name,
                        outcome,
                        result.verdict.throttle,
                        took,
                        result.verdict.reason,
                        limits=limits,
                    )
                    paced = paced or result.verdict.throttle
                waiting = _Applied(self, group, part, route, result, started_at, took)
                if not lookahead:
                    waiting = _settle(waiting)
            return True
        finally:
            transport.close()
            health.record_successes(route.name, good, good_latency, limits=limits, counted=paced)
            health.close_session(slot)

    def _skip(self, group: list[_Part], route: RouteSpec, why: str) -> None:
        """The route cannot be used now: its parts go on to their next route."""
        for part in group:
            part.msg.last_reply = f"{route.name} skipped: {why}"
            part.routes.pop(0)

    def _hold(self, group: list[_Part], route: RouteSpec, wait: float) -> None:
        """Over the route's rate: retry these parts when it has room, not counted as a try."""
        for part in group:
            part.msg.last_reply = f"{route.name}: rate limit, next send in {wait:.0f}s"
            part.msg.not_before = max(part.msg.not_before, wait)
            part.routes = []

    def _route_fault(
        self, part: _Part, route: RouteSpec, exc: TransportError, started: float
    ) -> None:
        self._record(
            part.msg,
            route,
            Attempt.ROUTE_FAULT,
            exc.reply,
            self.clock(),
            time.monotonic() - started,
            [
                {"address": a, "outcome": Outcome.ROUTE_FAULT.value, "reply": str(exc.reply)}
                for a in part.open_addresses
            ],
        )
        part.msg.last_reply = f"{route.name}: {exc.verdict.reason}: {exc.reply}"
        part.last_fault = exc.verdict
        part.routes.pop(0)
        self._maybe_flush()

    def _apply(
        self, part: _Part, route: RouteSpec, result: SendResult, started_at: datetime, took: float
    ) -> None:
        msg = part.msg
        still_open: list[str] = []
        per_rcpt = []  # kept on the attempt only when there are several recipients
        many = len(result.recipients) > 1
        outcomes = set()
        split: list[str] = []
        accepted_any = any(rr.verdict.outcome == Outcome.DELIVERED for rr in result.recipients)
        for rr in result.recipients:
            rcpt = msg.rcpts[rr.address]
            outcome = rr.verdict.outcome
            outcomes.add(outcome)
            if many:
                per_rcpt.append(
                    {"address": rr.address, "outcome": outcome.value, "reply": str(rr.reply)}
                )
            if outcome == Outcome.ROUTE_FAULT:
                still_open.append(rr.address)
                part.last_fault = rr.verdict
                continue
            if rr.verdict.split and accepted_any:
                # "Too many recipients": the rest go in another transaction, now.
                split.append(rr.address)
                continue
            if (
                rr.verdict.give_up_after
                and self.clock() - msg.created_at >= rr.verdict.give_up_after
            ):
                outcome = Outcome.PERMANENT
            rcpt.changed = True
            rcpt.smtp_code = rr.reply.code
            rcpt.enhanced_code = rr.reply.enhanced
            rcpt.route_pk = route.pk
            if outcome == Outcome.DELIVERED:
                rcpt.status = Recipient.Status.DELIVERED
                rcpt.reply = ""
                continue
            rcpt.reply = f"{route.name}: {rr.reply}"[:2000]
            msg.last_reply = rcpt.reply
            if outcome == Outcome.PERMANENT:
                rcpt.status = Recipient.Status.FAILED
                self._maybe_suppress(rcpt)
            else:
                rcpt.status = Recipient.Status.DEFERRED
                if rr.verdict.same_route or outcome == Outcome.UNCERTAIN:
                    msg.retry_route = route.name
        part.open_addresses = still_open
        if still_open:
            msg.last_reply = f"{route.name}: {result.verdict.reason}: {result.reply}"
            part.routes.pop(0)
        if split:
            # A new part on the same routes, which the batch loop sends next.
            rest = [r for r in part.routes if r.name != route.name]
            self._extra_parts.append(_Part(msg, [route, *rest], split))
            msg.parts_left += 1
        if outcomes == {Outcome.DELIVERED}:
            overall = Attempt.DELIVERED
        elif Outcome.DELIVERED in outcomes:
            overall = Attempt.PARTIAL
        else:
            overall = Attempt(result.outcome.value)
        self._record(
            msg,
            route,
            overall,
            result.reply,
            started_at,
            took,
            per_rcpt,
            possible_duplicate=Outcome.UNCERTAIN in outcomes,
        )
        if not still_open:
            self._finish(part)
        # After _finish: the flush then takes this message's new state with its attempt.
        self._maybe_flush()

    def _maybe_suppress(self, rcpt: _Rcpt) -> None:
        code = rcpt.enhanced_code
        if app_settings.suppress_on_permanent_failure and (
            code.startswith("5.1.") or code == "5.2.1"
        ):
            self._pending.suppress.append(
                Suppression(
                    address=rcpt.address.lower(),
                    reason=rcpt.reply[:500],
                    source=Suppression.Source.BOUNCE,
                )
            )

    def _record(
        self,
        msg: _Msg,
        route: RouteSpec,
        outcome: str,
        reply: Reply,
        started_at: datetime,
        took: float,
        recipients: list[dict[str, str]],
        *,
        possible_duplicate: bool = False,
    ) -> None:
        # A plain tuple, in ATTEMPT_COLUMNS order: results.insert_attempts writes
        # thousands of these without building a model instance for each. It is
        # converted for the database now, while the relay works on the next message.
        row = (
            msg.pk,
            route.pk,
            route.name,
            started_at,
            timedelta(seconds=took),
            outcome,
            str(reply.stage),
            reply.code,
            reply.enhanced,
            reply.text[:4000],
            reply.exception,
            recipients if len(recipients) > 1 else _NO_RECIPIENTS,
            possible_duplicate,
        )
        self._pending.attempts.append(self._prepare_attempt(row))
        self.report.attempts += 1
        self._since_flush += 1

    def _maybe_flush(self) -> None:
        """Write the results so far when enough sends (or a third of a lease) went by."""
        if (
            self._since_flush >= self._flush_every
            or time.monotonic() - self._flushed_at > self._lease_seconds / 3
        ):
            self._flush()

    def _finish(self, part: _Part) -> None:
        """Settle a part once no route is left to try for it."""
        part.done = True
        msg = part.msg
        # Route faults everywhere: retry later, unless the last fault says that no
        # route can take it (a message too large for every relay, say).
        final = (
            part.last_fault.final_outcome(other_route_left=False)
            if part.last_fault
            else Outcome.TRANSIENT
        )
        for address in part.open_addresses:
            rcpt = msg.rcpts[address]
            rcpt.changed = True
            rcpt.status = (
                Recipient.Status.FAILED if final == Outcome.PERMANENT else Recipient.Status.DEFERRED
            )
            rcpt.reply = msg.last_reply[:2000]
        part.open_addresses = []
        msg.parts_left -= 1
        if msg.parts_left <= 0:
            self._pending.finished.append(msg)

    def backoff(self, attempt: int) -> timedelta:
        """Delay before retry ``attempt`` (1-based): exponential, capped, with jitter."""
        base = app_settings.retry_base.total_seconds()
        cap = app_settings.retry_max.total_seconds()
        delay = min(cap, base * 2 ** max(0, attempt - 1))
        jitter = app_settings.retry_jitter
        if jitter:
            delay *= 1 + self.rng.uniform(-jitter, jitter)
        return timedelta(seconds=max(0.0, delay))
