"""One session of one route: pace, open the transport, send with look-ahead, settle.

A route session is where a transport plugs into the engine. It asks the
route's health for a connection slot and for pacing, opens the transport,
sends each part of its group (telling a pipelining transport which message
comes next), skips parts whose lease was lost, and turns every failure of
the route, of whatever kind, into a route fault for the parts it had not
settled: the next route takes them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime

from django.utils import timezone

from ..health import RouteHealthService
from ..health.circuit import BreakerState
from ..health.per_destination import classify
from ..health.ratelimit import RateLimits
from ..replies import Outcome, Stage, Verdict
from ..routing import RouteSpec
from ..signing.signer import SigningError
from ..tracking.ids import smtprelay_id
from ..transports.base import Envelope, Reply, SendResult, Transport, TransportError
from .batch import Batch
from .signing import signing_fault
from .state import _Part

logger = logging.getLogger("django_smtprelay.delivery")

# Outcomes that show the route did its job (the recipient's fate aside).
ROUTE_WORKS = (Outcome.DELIVERED, Outcome.TRANSIENT, Outcome.PERMANENT)

# The most replies one step waits for, each bounded by the route's timeout:
# a connect (greeting, EHLO, STARTTLS, EHLO, AUTH and its challenges), and a
# send (MAIL, DATA, the final dot, plus one per recipient). The lease is kept
# for that long and no longer, so a relay that never finishes (a tarpit)
# cannot hold the batch for ever.
_OPEN_REPLIES = 8
_SEND_REPLIES = 3

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


def _send_seconds(transport: Transport, route: RouteSpec, part: _Part) -> float:
    """The longest one send of ``part`` may take: the transport's own bound
    (``send_seconds(addresses)``: an MX route may try several hosts), or one
    reply per command."""
    bound = getattr(transport, "send_seconds", None)
    if bound is not None:
        return float(bound(part.open_addresses))
    return route.timeout * (_SEND_REPLIES + len(part.open_addresses))


def _route_outcome(result: SendResult) -> Outcome:
    """What one send says about the route (not the recipients)."""
    outcomes = {r.verdict.outcome for r in result.recipients}
    if Outcome.DELIVERED in outcomes:
        return Outcome.DELIVERED
    return result.verdict.outcome


class _Applied:
    """One send's result, applied to the batch later: while the relay works on
    the next message (``Transport.send(meanwhile=...)``), or at once."""

    __slots__ = ("args", "batch", "failure", "group", "part", "settled")

    def __init__(
        self,
        batch: Batch,
        group: list[_Part],
        part: _Part,
        route: RouteSpec,
        result: SendResult,
        started_at: datetime,
        took: float,
    ) -> None:
        self.batch, self.group, self.part = batch, group, part
        self.args = (route, result, started_at, took)
        self.failure: BaseException | None = None
        self.settled = False

    def settle(self) -> None:
        if self.settled:
            return
        self.settled = True
        self.batch.apply(self.part, *self.args)
        # Recipients split off by "too many recipients" go next, in this same session.
        self.group.extend(self.batch.take_split_off())

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


class RouteSession:
    """Sends one group of parts over one session of one route."""

    def __init__(
        self,
        batch: Batch,
        route: RouteSpec,
        group: list[_Part],
        *,
        health: RouteHealthService,
        transport_factory: Callable[[RouteSpec], Transport],
        clock: Callable[[], datetime],
    ) -> None:
        self.batch, self.route, self.group = batch, route, group
        self.health = health
        self.limits = _limits(route)
        self.transport_factory = transport_factory
        self.clock = clock
        self.transport: Transport | None = None
        self.paced = False
        self.good, self.good_latency = 0, 0.0  # reported together: a few cache operations
        # The good sends' share of each destination group: (sends, latency).
        self.good_groups: dict[str, tuple[int, float]] = {}
        # The result of the last send, not yet applied (see _Applied).
        self.waiting: _Applied | None = None

    def run(self) -> bool:
        """Send the group; False if the route turned out to be down."""
        route, health, limits = self.route, self.health, self.limits
        if not health.usable(route.name):
            why = _circuit_open(health.state(route.name), self.clock())
            self.batch.skip(self.group, route, why)
            return False
        slot = health.open_session(route.name, limits)
        if slot is None:
            self.batch.skip(self.group, route, "all of its connections are in use")
            return False
        try:
            return self._run()
        finally:
            self._close()
            self._report_good()
            health.close_session(slot)

    def _run(self) -> bool:
        route, health, limits, group = self.route, self.health, self.limits, self.group
        started = time.monotonic()
        try:
            transport = self.transport = self.transport_factory(route)
        except Exception as exc:  # a route that cannot even be set up is a route fault
            self._unexpected(exc, 0, started, during="setting up the transport")
            return False
        self.paced = health.paced(route.name, limits)
        # A transport that pipelines messages is told which message comes next,
        # so it can send that one's commands with this one's content (not while
        # paced: the next send may have to wait), and records the previous
        # message's result while the relay works on this one.
        lookahead = getattr(transport, "pipelines_messages", False)
        announced: tuple[_Part, Envelope] | None = None
        index = 0
        while index < len(group) or self.waiting is not None:
            if index >= len(group):
                # Settling the last result may split off recipients to send next.
                self.waiting = _settle(self.waiting)
                continue
            part = group[index]
            index += 1
            if part.done:  # its lease was lost: another worker has it now
                announced = self._unannounce(announced, part)
                continue
            if self.paced and not self._pace(index - 1):
                return True
            if not getattr(transport, "is_open", False):
                self.waiting = _settle(self.waiting)
                if not self._open(index - 1):
                    return False
            self.batch.check_lease()
            if part.done:  # the check found its lease lost
                announced = self._unannounce(announced, part)
                continue
            started_at, started = self.clock(), time.monotonic()
            if announced is not None and announced[0] is part:
                envelope = announced[1]
            else:
                try:
                    envelope = self._envelope(part)
                except SigningError as exc:
                    self.waiting = _settle(self.waiting)
                    self._signing_fault(part, exc, started)
                    continue
            announced = None
            waiting = self.waiting
            self.batch.expect(_send_seconds(transport, route, part))
            try:
                if lookahead:
                    following = group[index] if index < len(group) else None
                    if not self.paced and following is not None and not following.done:
                        announced = self._announce(following)
                    result = transport.send(  # type: ignore[call-arg]
                        envelope,
                        following=announced[1] if announced else None,
                        meanwhile=waiting.settle_quietly if waiting is not None else None,
                    )
                else:
                    result = transport.send(envelope)
            except Exception as exc:
                # Whatever it was, it says nothing about the recipients: the
                # parts not yet settled go to the next route. The message may
                # have reached the relay, so its next delivery is flagged.
                self._settle_after_failure(waiting)
                self._unexpected(exc, index - 1, started, during="sending")
                return False
            if waiting is not None:
                # A transport that did not call ``meanwhile`` leaves it to us.
                waiting.settle()
                waiting.raise_failure()
            took = time.monotonic() - started
            self.waiting = _Applied(self.batch, group, part, route, result, started_at, took)
            self._account(result, took, part)
            if not lookahead:
                self.waiting = _settle(self.waiting)
        return True

    def _envelope(self, part: _Part) -> Envelope:
        """What goes out for ``part``: signed with its From domain's keys if the route signs."""
        msg, addresses = part.msg, list(part.open_addresses)
        data, part.signed_by = msg.data, ""
        if self.route.dkim_sign and self.route.kind != "anymail":  # an ESP signs itself
            try:
                data, part.signed_by = self.batch.signatures.sign(msg)
            except SigningError:
                raise
            except Exception as exc:
                # Loading a key, reading a streamed body, the signature itself:
                # whatever fails is this message's route fault, never an
                # exception that leaves the batch with results unwritten.
                logger.exception("Route %s: signing message %s failed", self.route.name, msg.pk)
                raise SigningError(f"unexpected {type(exc).__name__} while signing") from exc
        # Sent to one recipient, the id names its row; to several, the message
        # (an event then finds its row by the message and the address).
        rcpt = msg.rcpts.get(addresses[0]) if len(addresses) == 1 else None
        tracking_id = smtprelay_id(msg.pk, rcpt.pk if rcpt is not None else None)
        return Envelope(msg.sender, addresses, data, tracking_id)

    def _announce(self, part: _Part) -> tuple[_Part, Envelope] | None:
        """``part`` with its envelope, to send next; None if it cannot be signed
        (its turn then makes the route fault)."""
        try:
            return part, self._envelope(part)
        except SigningError:
            return None

    def _signing_fault(self, part: _Part, exc: SigningError, started: float) -> None:
        """``part`` cannot be signed: a route fault for it alone (see delivery/signing.py)."""
        logger.warning("Route %s: message %s not sent: %s", self.route.name, part.msg.pk, exc)
        verdict, reply = signing_fault(exc)
        self.batch.route_fault(part, self.route, verdict, reply, started)

    def _pace(self, index: int) -> bool:
        """Wait for the route's rate limit; False (the rest held back) if it is too long."""
        route, health, limits = self.route, self.health, self.limits
        self.waiting = _settle(self.waiting)
        wait = health.before_send(route.name, limits)
        if wait > MAX_RATE_WAIT:
            self.batch.hold(self.group[index:], route, wait)
            return False
        if wait:
            time.sleep(wait)
            if health.before_send(route.name, limits):
                self.batch.hold(self.group[index:], route, MAX_RATE_WAIT)
                return False
        return True

    def _open(self, index: int) -> bool:
        """Open the transport; on failure the parts from ``index`` on go to their next route."""
        route = self.route
        assert self.transport is not None
        started = time.monotonic()
        self.batch.expect(route.timeout * _OPEN_REPLIES)
        try:
            self.transport.open()
        except TransportError as exc:
            self.health.after_result(
                route.name,
                exc.verdict.outcome,
                exc.verdict.throttle,
                time.monotonic() - started,
                exc.verdict.reason,
                limits=self.limits,
            )
            for failed in self.group[index:]:
                if not failed.done:
                    self.batch.route_fault(failed, route, exc.verdict, exc.reply, started)
            return False
        except Exception as exc:
            self._unexpected(exc, index, started, during="connecting", sent=False)
            return False
        self.batch.report.sessions += 1
        return True

    def _account(self, result: SendResult, took: float, part: _Part) -> None:
        """Route health for one send: good ones are counted up and reported together.

        Health is advice: when its cache fails, the send's result still counts.
        """
        if result.verdict.session_over:  # e.g. 421: the server is closing
            self._close(keep=True)
        try:
            self._account_health(result, took, part.group)
        except Exception:
            logger.warning("Route %s: recording its health failed", self.route.name, exc_info=True)

    def _account_health(self, result: SendResult, took: float, group: str) -> None:
        route, health, limits = self.route, self.health, self.limits
        outcome = _route_outcome(result)
        if outcome in ROUTE_WORKS and not result.verdict.throttle:
            self.good, self.good_latency = self.good + 1, self.good_latency + took
            if group:
                kind = classify(outcome.value, False)
                if kind == "accepted":
                    sends, latency = self.good_groups.get(group, (0, 0.0))
                    self.good_groups[group] = (sends + 1, latency + took)
                else:  # the route works, but this receiver deferred or refused
                    health.destinations.record(route.name, group, kind, took, self.clock())
            return
        # Settle the session's good sends first, so a slow-down is measured
        # against everything sent so far, this one included.
        self._report_good()
        if not self.paced:
            health.limiter(route.name, limits).count_sends(1, self.clock())
        health.after_result(
            route.name,
            outcome,
            result.verdict.throttle,
            took,
            result.verdict.reason,
            limits=limits,
            group=group,
        )
        # A destination's throttling lowers the route's share of it (no slow-down).
        self.paced = self.paced or (result.verdict.throttle and not group)

    def _report_good(self) -> None:
        """Report the good sends counted so far, and start counting again."""
        self.health.record_successes(
            self.route.name,
            self.good,
            self.good_latency,
            limits=self.limits,
            counted=self.paced,
            groups=self.good_groups,
        )
        self.good, self.good_latency, self.good_groups = 0, 0.0, {}

    def _settle_after_failure(self, waiting: _Applied | None) -> None:
        """The previous send's result, if the failed send did not get to apply it."""
        if waiting is not None:
            waiting.settle()
            waiting.raise_failure()
        self.waiting = None

    def _unexpected(
        self, exc: Exception, index: int, started: float, *, during: str, sent: bool = True
    ) -> None:
        """Any other failure of the route: logged with its traceback, a route fault
        for every part from ``index`` on, and the route down for this batch.

        Only the exception's class goes into the attempt (its text may quote
        what was being sent); the log has the traceback.
        """
        route = self.route
        logger.error(
            "Route %s failed unexpectedly while %s; its messages go to the next route",
            route.name,
            during,
            exc_info=exc,
        )
        name = type(exc).__name__
        reason = f"unexpected {name} while {during} (the worker's log has the traceback)"
        verdict = Verdict(Outcome.ROUTE_FAULT, reason)
        stage = Stage.CONNECT if not sent else Stage.DATA
        reply = Reply(stage=stage, text=reason, exception=name)
        self.health.after_result(
            route.name,
            Outcome.ROUTE_FAULT,
            False,
            time.monotonic() - started,
            reason,
            limits=self.limits,
        )
        for number, part in enumerate(self.group[index:]):
            if not part.done and part.open_addresses:
                # Only the message being sent can have reached the relay.
                self.batch.route_fault(
                    part, route, verdict, reply, started, possible_duplicate=sent and number == 0
                )

    def _unannounce(
        self, announced: tuple[_Part, Envelope] | None, part: _Part
    ) -> tuple[_Part, Envelope] | None:
        """``part`` will not be sent after all: if its commands went out ahead,
        the session ends without its content, and the relay discards it."""
        if announced is not None and announced[0] is part:
            self._close(keep=True)
        return None if announced is None or announced[0] is part else announced

    def _close(self, *, keep: bool = False) -> None:
        """Close the transport (``keep``: to open it again for the rest of the group)."""
        transport = self.transport
        if not keep:
            self.transport = None
        if transport is None:
            return
        try:
            transport.close()
        except Exception:
            logger.warning("Route %s: closing the transport failed", self.route.name, exc_info=True)


def _circuit_open(state: BreakerState, now: datetime) -> str:
    """Why a route's circuit kept a group off it, for the message's error."""
    if state.until is None or state.until <= now:
        return f"circuit half-open, another worker is probing it ({state.reason})"
    until = timezone.localtime(state.until)
    return f"circuit open until {until:%H:%M:%S %Z} ({state.reason})"
