"""Direct-to-MX routes: each recipient domain's own mail servers, found in DNS.

A message's recipients are grouped by domain; each domain's recipients go in
one transaction to its first MX host that takes them (:mod:`.mx_hosts` gives
the order), over a session kept open for the rest of the batch. A connection
failure, a refused TLS requirement or a 4xx at one host moves its recipients
on to the next host; replies are read with the same table as a relay's
(:mod:`django_smtprelay.replies`). MTA-STS (:mod:`.sts_policies`) narrows the
hosts and requires verified TLS for domains whose policy is ``enforce``.

How outcomes fit the engine's failover rules. A relay's route fault moves the
message to the next route and counts against the route's circuit breaker. An
MX route has one "relay" per recipient domain, so the transport settles each
recipient itself and hands the engine no route faults for what one domain's
servers do:

- a 5xx from an MX host is that domain's answer: permanent, even where the
  reply table calls it the sending side's problem (a blocklisted IP, DMARC)
  and a relay would be failed over. A sending-side refusal by one domain says
  nothing about the others, and counted as a route fault it would open the
  circuit of the route that serves every other domain; a site that wants a
  smarthost to take what an MX refuses routes those domains there
  (recipient domain rules).
- when every MX host fails (down, 4xx, TLS refused), the recipients are
  deferred, with each host and why: the domain is unreachable now, not the
  route broken; the retry schedule tries again. Throttling replies are not
  passed on to the route's rate limit for the same reason.
- what is left for the engine's route faults is the route itself failing
  (an exception in the transport): the next route then takes the message.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import replace

from ..conf import app_settings
from ..domains.resolver import Resolver
from ..models import Route
from ..replies import Outcome, Stage, Verdict
from ..routing import RouteSpec
from .base import Envelope, RecipientResult, Reply, SendResult, TransportError
from .mx_hosts import Destination, NoDestination, find_destination
from .mx_session import CertificateRejected, MXSession, TLSFailed
from .sts_policies import Lookup, policy_for

logger = logging.getLogger("django_smtprelay.delivery")

# Sessions kept open at once (to different MX addresses); the least recently
# used is closed first.
MAX_SESSIONS = 10
# The most MX addresses one domain's recipients are tried at, per message.
MAX_TRIES = 5
# The replies one MX host may take to open and to send (see delivery.session).
_HOST_REPLIES = 8 + 3
# The most of the hosts' failures kept in a deferral's reason.
_REASON_LIMIT = 1500


def _domain(address: str) -> str:
    return address.rpartition("@")[2].rstrip(".").lower()


class MXTransport:
    """A route session that delivers to each recipient domain's MX hosts."""

    pipelines_messages = False

    def __init__(self, route: RouteSpec, *, resolver: Resolver | None = None) -> None:
        self.route = route
        self.resolver = resolver or Resolver()
        self.is_open = False
        self._sessions: OrderedDict[tuple[str, str, int], MXSession] = OrderedDict()
        # Within a batch each domain is looked up once (and shuffled once).
        self._destinations: dict[str, Destination | NoDestination] = {}
        self._policies: dict[str, Lookup] = {}
        # MX addresses whose certificate did not verify (why), or whose TLS
        # handshake failed: not tried again in this batch.
        self._unverifiable: dict[tuple[str, str, int], str] = {}
        self._no_tls: set[tuple[str, str, int]] = set()

    def __repr__(self) -> str:
        return f"<MXTransport {self.route.name} sessions={len(self._sessions)}>"

    def open(self) -> None:
        """Nothing to connect to yet: each MX host is dialled when a message needs it."""
        self.is_open = True

    def close(self) -> None:
        self.is_open = False
        sessions, self._sessions = list(self._sessions.values()), OrderedDict()
        for session in sessions:
            session.close()

    def send_seconds(self, addresses: list[str]) -> float:
        """The longest one ``send`` may take (the engine keeps the lease for it):
        two hosts per domain, more only while time is left."""
        domains = len({_domain(a) for a in addresses})
        tries = min(2 * domains, MAX_TRIES * domains)
        lookups = domains * (6 * app_settings.dns_timeout + app_settings.mta_sts_timeout)
        return self.route.timeout * (_HOST_REPLIES * tries + len(addresses)) + lookups

    def send(self, envelope: Envelope) -> SendResult:
        """Deliver to each recipient domain; per-recipient results, never raises for
        DNS, SMTP or socket errors."""
        deadline = time.monotonic() + self.send_seconds(envelope.recipients)
        by_domain: dict[str, list[str]] = {}
        for address in envelope.recipients:
            by_domain.setdefault(_domain(address), []).append(address)
        results: dict[str, RecipientResult] = {}
        for domain, addresses in by_domain.items():
            for result in _Delivery(self, envelope, domain, addresses, deadline).run():
                results[result.address] = result
        ordered = [results[a] for a in envelope.recipients]
        shown = next((r for r in ordered if r.verdict.outcome == Outcome.DELIVERED), ordered[0])
        return SendResult(shown.verdict, shown.reply, ordered)

    # -- for _Delivery ---------------------------------------------------------

    def destination(self, domain: str) -> Destination | NoDestination:
        if domain not in self._destinations:
            try:
                self._destinations[domain] = find_destination(domain, self.resolver)
            except NoDestination as exc:
                self._destinations[domain] = exc
        return self._destinations[domain]

    def policy(self, domain: str) -> Lookup:
        if domain not in self._policies:
            self._policies[domain] = policy_for(domain, self.resolver)
        return self._policies[domain]

    def session(self, host: str, address: str, *, require: bool) -> MXSession:
        """An open session with ``address`` (reused when it can be); raises TransportError."""
        key = (host, address, app_settings.mx_port_for(host))
        session = self._sessions.get(key)
        if session is not None and session.is_open and (session.verified or not require):
            self._sessions.move_to_end(key)
            return session
        if session is not None:
            session.close()
            del self._sessions[key]
        session = self._open(key, require)
        self._sessions[key] = session
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)[1].close()
        return session

    def _open(self, key: tuple[str, str, int], require: bool) -> MXSession:
        host, address, port = key
        why_not = self._unverifiable.get(key, "")
        if why_not and require:
            raise _certificate_fault(host, why_not)
        tls = key not in self._no_tls
        session = MXSession(self.route, host, address, port, verify=not why_not, tls=tls)
        try:
            session.open(unverified_because=why_not, require=require)
        except CertificateRejected as exc:
            self._unverifiable[key] = why = f"certificate: {exc}"
            if require:
                raise _certificate_fault(host, why) from None
            session = MXSession(self.route, host, address, port, verify=False, tls=True)
            session.open(unverified_because=why)
        except TLSFailed:
            if require:
                raise
            # Opportunistic TLS: delivered in plaintext rather than not at all.
            self._no_tls.add(key)
            session = MXSession(self.route, host, address, port, verify=False, tls=False)
            session.open()
        return session

    def forget(self, session: MXSession) -> None:
        """Drop a session that ended (the host closed it, or a send failed)."""
        key = (session.mx_host, session.address, session.port)
        if self._sessions.get(key) is session and not session.is_open:
            del self._sessions[key]


def _went_stale(result: SendResult) -> bool:
    """The session was gone before MAIL got any reply (the host closed it while idle)."""
    reply = result.reply
    return reply.stage == Stage.MAIL and reply.code is None and bool(reply.exception)


def _certificate_fault(host: str, why: str) -> TransportError:
    reason = f"no verified TLS with {host} ({why})"
    return TransportError(Verdict(Outcome.ROUTE_FAULT, reason), Reply(Stage.STARTTLS, text=reason))


class _Delivery:
    """One domain's recipients of one message, tried at its MX hosts in turn."""

    def __init__(
        self,
        transport: MXTransport,
        envelope: Envelope,
        domain: str,
        addresses: list[str],
        deadline: float,
    ) -> None:
        self.transport, self.envelope, self.domain = transport, envelope, domain
        self.pending = list(addresses)
        self.deadline = deadline
        self.results: list[RecipientResult] = []
        self.failures: list[str] = []  # "host [address]: why", for a deferral
        self.last: Verdict | None = None
        self.last_reply: Reply | None = None

    def run(self) -> list[RecipientResult]:
        found = self.transport.destination(self.domain)
        if isinstance(found, NoDestination):
            outcome = Outcome.PERMANENT if found.permanent else Outcome.TRANSIENT
            verdict = Verdict(outcome, found.reason)
            reply = Reply(Stage.CONNECT, enhanced=found.enhanced, text=found.reason)
            return [RecipientResult(a, verdict, reply) for a in self.pending]
        sts = self.transport.policy(self.domain)
        hosts = found.hosts
        enforce = sts.mode == "enforce"
        if enforce:
            assert sts.policy is not None
            hosts = [h for h in hosts if sts.policy.matches(h)]
            for host in found.hosts:
                if host not in hosts:
                    self.failures.append(f"{host}: not named by the MTA-STS policy")
            if not hosts:
                why = (
                    f"the MTA-STS policy of {self.domain} (enforce) names none of its MX hosts "
                    f"(policy mx: {', '.join(sts.policy.mx)}; MX: {', '.join(found.hosts)})"
                )
                return self._defer_all(why)
        require = enforce or self.transport.route.mx_tls == Route.MXTLS.VERIFIED
        tries = 0
        for host in hosts:
            addresses = found.addresses(host, self.transport.resolver)
            if isinstance(addresses, str):
                self.failures.append(f"{host}: {addresses}")
                continue
            for address in addresses:
                if not self.pending:
                    break
                if tries >= MAX_TRIES or (tries and time.monotonic() >= self.deadline):
                    self.failures.append(f"{host} [{address}]: not tried (out of time or tries)")
                    break
                tries += 1
                self._try(host, address, require, sts)
        if self.pending:
            why = f"no MX host of {self.domain} took the message"
            if sts.mode == "enforce":
                why += " (MTA-STS enforce: only its hosts, over verified TLS)"
            self._defer_all(why)
        return self.results

    def _try(self, host: str, address: str, require: bool, sts: Lookup) -> None:
        transport = self.transport
        try:
            session = transport.session(host, address, require=require)
        except TransportError as exc:
            self._failed(f"{host} [{address}]", exc.verdict, exc.reply)
            return
        wire = Envelope(self.envelope.sender, list(self.pending), self.envelope.data)
        reused = session.sent > 0
        result = session.send(wire)
        transport.forget(session)
        if reused and _went_stale(result):
            # A session kept from an earlier message, closed by the host while
            # idle: that says nothing about the host. Once more, on a new one.
            try:
                session = transport.session(host, address, require=require)
            except TransportError as exc:
                self._failed(f"{host} [{address}]", exc.verdict, exc.reply)
                return
            result = session.send(wire)
            transport.forget(session)
        session.sent += 1
        notes = [session.tls]
        if sts.mode == "testing":
            assert sts.policy is not None
            if not sts.policy.matches(host):
                notes.append("MTA-STS testing: host not in the policy")
            if not session.verified:
                notes.append("MTA-STS testing: no verified TLS")
        elif sts.problem:
            notes.append(sts.problem)
        where = f"{session.where}, {'; '.join(notes)}"
        still: list[str] = []
        for rr in result.recipients:
            verdict = rr.verdict
            if verdict.session_over or verdict.throttle:
                # A closing or slowing host concerns its domain, not the route.
                verdict = replace(verdict, session_over=False, throttle=False)
                session.close()
                transport.forget(session)
            code = rr.reply.code or 0
            if verdict.outcome == Outcome.DELIVERED or verdict.split:
                self._settle(rr.address, verdict, rr.reply, where, rr.provider_message_id)
            elif verdict.outcome == Outcome.UNCERTAIN:
                # The host may have it: another host now could deliver it twice.
                self._settle(rr.address, verdict, rr.reply, where)
            elif code >= 500 or verdict.outcome == Outcome.PERMANENT:
                permanent = Verdict(Outcome.PERMANENT, verdict.reason, rule=verdict.rule)
                self._settle(rr.address, permanent, rr.reply, where)
            else:
                still.append(rr.address)
                self.last, self.last_reply = verdict, rr.reply
        if still:
            self.failures.append(f"{session.where}: {self.last_reply}")
        self.pending = still

    def _failed(self, where: str, verdict: Verdict, reply: Reply) -> None:
        self.failures.append(f"{where}: {reply}")
        self.last, self.last_reply = verdict, reply

    def _settle(
        self, address: str, verdict: Verdict, reply: Reply, where: str, provider_id: str = ""
    ) -> None:
        shown = replace(reply, text=f"{reply.text} [{where}]".strip())
        self.results.append(RecipientResult(address, verdict, shown, provider_id))

    def _defer_all(self, why: str) -> list[RecipientResult]:
        hosts = "; ".join(self.failures)
        text = f"{why}: {hosts}" if hosts else why
        last = self.last_reply
        if last is not None and last.code is None and last.exception:
            code, enhanced, stage = None, "", last.stage
        elif last is not None:
            code, enhanced, stage = last.code, last.enhanced, last.stage
        else:
            code, enhanced, stage = None, "", Stage.CONNECT
        # A message no host of the domain could take in this form (no SMTPUTF8,
        # too large for every host) fails; anything else is retried.
        final = self.last.final_outcome(other_route_left=False) if self.last else None
        outcome = Outcome.PERMANENT if final == Outcome.PERMANENT else Outcome.TRANSIENT
        same_route = bool(self.last and self.last.same_route)
        give_up_after = self.last.give_up_after if self.last else None
        verdict = Verdict(outcome, why, same_route=same_route, give_up_after=give_up_after)
        reply = Reply(stage, code, enhanced, text[:_REASON_LIMIT])
        for address in self.pending:
            self.results.append(RecipientResult(address, verdict, reply))
        self.pending = []
        return self.results
