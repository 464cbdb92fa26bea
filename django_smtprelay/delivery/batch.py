"""One claimed batch: its messages in memory, what happened to them, and its lease."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from ..conf import app_settings
from ..health import RouteHealthService
from ..models import DeliveryAttempt, Message, Recipient, Suppression
from ..models.messages import Claim
from ..replies import Outcome, Verdict
from ..routing import Router, RouteSpec
from ..transports.base import Reply, SendResult
from .lease import LeaseHeartbeat, renew
from .loading import load_parts
from .reasons import NoRouteLeft
from .results import Flush, ResultWriter, attempt_preparer
from .signing import Signatures
from .state import RunReport, _Msg, _Part, _Rcpt

logger = logging.getLogger("django_smtprelay.delivery")

Attempt = DeliveryAttempt.Outcome

# One shared (never mutated) value, so a flush converts it to JSON once, not per attempt.
_NO_RECIPIENTS: list[dict[str, str]] = []


class Batch:
    """The messages one claim won, split into parts by the routes they may take.

    Route sessions report each result here (:meth:`apply`, :meth:`route_fault`,
    :meth:`skip`, :meth:`hold`); the batch turns them into recipient and
    message states and attempt rows, hands them to the writer every
    ``FLUSH_EVERY`` sends, and keeps the lease for as long as sessions work
    on it (a :class:`~.lease.LeaseHeartbeat` while it is used as a context
    manager, and :meth:`check_lease`).
    """

    def __init__(
        self,
        claim: Claim,
        *,
        report: RunReport,
        writer: ResultWriter,
        clock: Callable[[], datetime],
    ) -> None:
        self.token = claim.token
        self.ids = claim.ids
        self.taken_over = claim.taken_over
        self.report = report
        report.claimed += len(claim.ids)
        self.clock = clock
        self._writer = writer
        self._pending = Flush(claim.token)
        self._prepare_attempt = attempt_preparer()
        self._since_flush = 0
        self._flush_every = app_settings.flush_every
        self._lease = app_settings.lease
        self._lease_seconds = self._lease.total_seconds()
        self._flushed_at = self._checked_at = time.monotonic()
        # Messages whose final state is not written yet: the rows the lease must cover.
        self._unwritten: set[int] = set(claim.ids)
        self.parts: list[_Part] = []
        self._split_off: list[_Part] = []
        self._no_route_left: NoRouteLeft | None = None
        # Why each route found down in this batch was (for the parts it drops).
        self._down: dict[str, str] = {}
        # The From domains' DKIM keys, for routes that sign.
        self.signatures = Signatures()

    # -- loading ---------------------------------------------------------------

    def load(self, router: Router, health: RouteHealthService) -> None:
        """Read the batch's messages and recipients, and split them into parts."""
        parts, nothing_to_send = load_parts(
            self.token, self.ids, self.taken_over, router, health, self.clock()
        )
        self._no_route_left = NoRouteLeft(router)
        self.parts.extend(parts)
        self._pending.finished.extend(nothing_to_send)

    def by_first_route(self, dead: set[str]) -> list[tuple[RouteSpec, list[_Part]]]:
        """The open parts grouped by the route each tries next (skipping ``dead``
        routes); parts with no route left are settled here."""
        groups: dict[str, tuple[RouteSpec, list[_Part]]] = {}
        for part in self.parts:
            if part.done:
                continue
            while part.routes and part.routes[0].name in dead:
                name = part.routes.pop(0).name
                part.could_not_use(self._down.get(name, f"{name}: found down in this batch"))
            if not part.open_addresses or not part.routes:
                self.finish(part)
                continue
            route = part.routes[0]
            groups.setdefault(route.name, (route, []))[1].append(part)
        return list(groups.values())

    def take_split_off(self) -> list[_Part]:
        """Parts split off by "too many recipients" replies since the last call."""
        parts, self._split_off = self._split_off, []
        self.parts.extend(parts)
        return parts

    # -- the lease ---------------------------------------------------------------

    def __enter__(self) -> Batch:
        self._heartbeat = LeaseHeartbeat(self.token, self._lease, self.clock).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._heartbeat.stop()

    def expect(self, seconds: float) -> None:
        """A step that may take up to ``seconds`` starts: the lease is kept for it."""
        self._heartbeat.expect(seconds)

    def check_lease(self) -> None:
        """Between sends, once a third of a lease has gone by: drop the messages
        whose lease was lost after all (another worker took them), so they are
        never sent again here. When the heartbeat's renewals have been failing
        (its database connection, say), this thread renews the lease itself."""
        now = time.monotonic()
        if now - self._checked_at < self._lease_seconds / 3 or not self._unwritten:
            return
        self._checked_at = now
        if now - self._heartbeat.renewed_at > self._lease_seconds / 2:
            renew(self.token, self._lease, self.clock())
            self._heartbeat.renewed_at = now
        held = set(Message.objects.leased_by(self.token).values_list("pk", flat=True))
        self._drop(self._unwritten - held)

    def _drop(self, lost: set[int]) -> None:
        if not lost:
            return
        logger.warning(
            "Lease lost for %d message(s) of batch %s; another worker has them: %s",
            len(lost),
            self.token,
            sorted(lost),
        )
        self.report.lost_leases += len(lost)
        self._unwritten -= lost
        self._pending.finished = [m for m in self._pending.finished if m.pk not in lost]
        for part in self.parts:
            if part.msg.pk in lost:
                part.done = True
                part.routes = []

    # -- results -----------------------------------------------------------------

    def apply(
        self, part: _Part, route: RouteSpec, result: SendResult, started_at: datetime, took: float
    ) -> None:
        """One send's result: each recipient's new state, and the attempt row."""
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
                rcpt.provider_message_id = rr.provider_message_id[:255]
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
            part.could_not_use(msg.last_reply)
            part.routes.pop(0)
        if split:
            # A new part on the same routes, which the session sends next.
            rest = [r for r in part.routes if r.name != route.name]
            self._split_off.append(
                _Part(
                    msg,
                    [route, *rest],
                    split,
                    match=part.match,
                    group=part.group,
                    choice=part.choice,
                )
            )
            msg.parts_left += 1
        if outcomes == {Outcome.DELIVERED}:
            overall = Attempt.DELIVERED
        elif Outcome.DELIVERED in outcomes:
            overall = Attempt.PARTIAL
        else:
            overall = Attempt(result.outcome.value)
        # A message taken over from an expired lease, or whose reply was lost
        # after the final dot, may have reached a relay before: the delivery
        # now may be its second.
        resent = msg.maybe_sent_before and Outcome.DELIVERED in outcomes
        self.record(
            msg,
            route,
            overall,
            result.reply,
            started_at,
            took,
            per_rcpt,
            possible_duplicate=resent or Outcome.UNCERTAIN in outcomes,
            choice=part.choice,
            # A partial delivery's reply is the accepted one: count the refusal.
            error_reply=(
                next(
                    rr.reply for rr in result.recipients if rr.verdict.outcome != Outcome.DELIVERED
                )
                if overall == Attempt.PARTIAL
                else None
            ),
            dkim_keys=part.signed_by,
        )
        if not still_open:
            self.finish(part)
        # After finish: the flush then takes this message's new state with its attempt.
        self._maybe_flush()

    def route_fault(
        self,
        part: _Part,
        route: RouteSpec,
        verdict: Verdict,
        reply: Reply,
        started: float,
        *,
        possible_duplicate: bool = False,
    ) -> None:
        """The route failed before (or without) a result for ``part``: try the next route."""
        self.record(
            part.msg,
            route,
            Attempt.ROUTE_FAULT,
            reply,
            self.clock(),
            time.monotonic() - started,
            [
                {"address": a, "outcome": Outcome.ROUTE_FAULT.value, "reply": str(reply)}
                for a in part.open_addresses
            ],
            possible_duplicate=possible_duplicate,
            choice=part.choice,
        )
        # The reply adds to the reason only when it says more (an unexpected failure's
        # reply is its reason: said once).
        detail = str(reply)
        said = verdict.reason if detail in ("", verdict.reason) else f"{verdict.reason}: {detail}"
        part.msg.last_reply = self._down[route.name] = f"{route.name}: {said}"
        part.could_not_use(part.msg.last_reply)
        part.last_fault = verdict
        part.routes.pop(0)
        self._maybe_flush()

    def skip(self, group: list[_Part], route: RouteSpec, why: str) -> None:
        """The route cannot be used now: its parts go on to their next route."""
        self._down[route.name] = reason = f"{route.name}: {why}"
        for part in group:
            part.msg.last_reply = reason
            part.could_not_use(reason)
            part.routes.pop(0)

    def hold(self, group: list[_Part], route: RouteSpec, wait: float) -> None:
        """Over the route's rate: retry these parts when it has room, not counted as a try."""
        reason = f"{route.name}: rate limit, next send in {wait:.0f}s"
        for part in group:
            part.msg.last_reply = reason
            part.could_not_use(reason)
            part.msg.not_before = max(part.msg.not_before, wait)
            part.routes = []

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

    def record(
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
        error_reply: Reply | None = None,
        dkim_keys: str = "",
        choice: dict[str, object] | None = None,
    ) -> None:
        """Add one attempt row to the next flush (and to its statistics, where a
        failure counts as ``error_reply`` when given); ``choice``: the figures
        that put ``route`` first (see ``RouteHealthService.order_for``)."""
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
            dkim_keys[:600],
            choice,
        )
        self._pending.attempts.append(self._prepare_attempt(row))
        error = error_reply or reply
        self._pending.stats.attempt(
            started_at, route.name, outcome, took, error.code, error.enhanced, error.text, msg.pk
        )
        if possible_duplicate:
            msg.possible_duplicate = True
        self.report.attempts += 1
        self._since_flush += 1

    def finish(self, part: _Part) -> None:
        """Settle a part once no route is left to try for it."""
        part.done = True
        msg = part.msg
        if part.open_addresses and part.unusable and self._no_route_left is not None:
            # No route left: name every route and why it could not take it.
            msg.last_reply = self._no_route_left(part)
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

    # -- writing -----------------------------------------------------------------

    def _maybe_flush(self) -> None:
        """Write the results so far when enough sends (or a third of a lease) went by."""
        if (
            self._since_flush >= self._flush_every
            or time.monotonic() - self._flushed_at > self._lease_seconds / 3
        ):
            self.flush()

    def flush(self) -> None:
        """Hand the results so far to the writer (one transaction)."""
        self._flushed_at = time.monotonic()
        self._heartbeat.expect(self._lease_seconds)
        flush, self._pending, self._since_flush = self._pending, Flush(self.token), 0
        self._writer.submit(flush)
        self._unwritten.difference_update(m.pk for m in flush.finished)
