"""What an SMTP reply (or a failure to get one) means for delivery.

:func:`classify` maps the stage, the basic code (RFC 5321), the enhanced code
(RFC 3463) and the reply text to a :class:`Verdict`; :func:`classify_exception`
does the same for a connection that gave no reply.

How a reply is read:

1. The enhanced code is taken from the start of the text (``#5.1.0``, one code
   per line of a multi-line reply) unless the caller passes it. The *basic*
   code says whether to retry (RFC 3463 section 2: the class is what the
   basic code says; MTAs such as Postfix rewrite the enhanced code's first
   digit to match it): ``550 4.2.2`` is a permanent reply and ``450 5.1.1`` a
   temporary one; the enhanced code still tells what happened. That class is
   "the class" below.
2. No reply at all is a route fault, or ``uncertain`` after the final dot. 2xx
   and 3xx are accepted. A code outside 200-599 is a broken relay, and
   ``uncertain`` after the final dot (the relay may have taken the message).
3. Then :data:`RULES` is tried in order and the first match decides. The order
   is from the most specific cause to the most general:

   - what the text says about the *sending* side wins over the code: a
     content-domain listing (Spamhaus DBL, URIBL) is about the message; a
     5xx rate limit ("connection frequency limited", "too many messages")
     throttles the route and retries later; a blocklist, the sending IP's
     reputation, a refused sending host or network, SPF/DKIM/DMARC/PTR
     failures and relaying denied are about the route: another route may
     succeed, and the recipient fails (for a 5xx) only when none is left;
   - an ESP refusing the route's account (not authorized, sender not
     verified, sending paused) is a route fault that never fails a recipient;
   - relay-side limits, AUTH failures, 421, and any refusal before MAIL;
   - split the transaction for "too many recipients", then the recipient's
     address (x.1.1, x.1.10, ...) and mailbox (x.2.1), which win over 500-504;
   - 500-504 after the final dot concern the message: it fails once no other
     route is left; anywhere else they are a protocol error, a route fault;
   - greylisting, mailbox full, message too large, content rejection;
   - the defaults: 4xx is transient, 5xx at MAIL is the route's sender
     problem, any other 5xx is permanent.

4. Whatever rule matched, a 421 also means the server is closing the session
   and asked us to slow down (``session_over`` and ``throttle``).

A route fault never fails a recipient by itself: :meth:`Verdict.final_outcome`
says what it becomes when no other route is left.
"""

from __future__ import annotations

import enum
import re
import smtplib
import socket
import ssl
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache


class Stage(str, enum.Enum):
    CONNECT = "connect"
    GREETING = "greeting"
    EHLO = "ehlo"
    STARTTLS = "starttls"
    AUTH = "auth"
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"
    DOT = "dot"  # the reply to the final "." after the message body

    def __str__(self) -> str:
        return self.value


class Outcome(str, enum.Enum):
    DELIVERED = "delivered"
    TRANSIENT = "transient"  # retry this recipient later
    PERMANENT = "permanent"  # this recipient fails
    ROUTE_FAULT = "route_fault"  # the relay is the problem: fail over now
    UNCERTAIN = "uncertain"  # lost after the final dot: the server may have it

    def __str__(self) -> str:
        return self.value


# A full mailbox is retried, but not for the whole queue lifetime: a mailbox
# that stays full this long is most likely abandoned.
MAILBOX_FULL_GIVE_UP = timedelta(days=1)


@dataclass(frozen=True)
class Verdict:
    """The outcome of one reply, why, and what the engine should do besides."""

    outcome: Outcome
    reason: str
    # The route asked us to slow down: rate-limit the route, don't fault it.
    throttle: bool = False
    # Not a failure: send this and the remaining recipients in another
    # transaction at once.
    split: bool = False
    # The server closed (or is closing) the connection: nothing more can be
    # sent on it. Recipients not yet tried are untouched; a session-level
    # 421 (before MAIL) is a reason to move on to the next route.
    session_over: bool = False
    # Retry through the same route: the receiver (greylisting) remembers the
    # sending IP, and another route would start over.
    same_route: bool = False
    # For a route fault: the outcome when no other route is left.
    # None means transient (defer).
    if_last_route: Outcome | None = None
    # For a transient outcome: once the message has been queued this long,
    # fail the recipient instead of retrying again.
    give_up_after: timedelta | None = None
    # Name of the rule in RULES that decided (empty for exceptions).
    rule: str = ""

    def final_outcome(self, *, other_route_left: bool) -> Outcome:
        """The outcome for the recipient once the engine knows if it can fail over."""
        if self.outcome is Outcome.ROUTE_FAULT and not other_route_left:
            return self.if_last_route or Outcome.TRANSIENT
        return self.outcome


_ENHANCED = re.compile(r"^#?([245])\.(\d{1,3})\.(\d{1,3})(?![.\d])")
_BASIC_PREFIX = re.compile(r"^[245]\d\d[ -]")


def parse_enhanced(text: str) -> tuple[str, str]:
    """Split the enhanced status code (``5.1.1``) off a reply text.

    Takes raw lines (``550-5.1.1 ...``) or the text smtplib returns; the code
    repeated at the start of each line of a multi-line reply is dropped, and
    the lines are joined with spaces.
    """
    enhanced, rest = "", []
    for raw in (text or "").splitlines():
        line = _BASIC_PREFIX.sub("", raw.strip(), count=1)
        m = _ENHANCED.match(line)
        if m:
            code = ".".join(m.groups())
            if not enhanced:
                enhanced = code
            if code == enhanced:
                line = line[m.end() :]
        if line.strip():
            rest.append(line.strip())
    return enhanced, " ".join(rest)


_CONTENT = "content"  # rule outcome placeholder: the content_rejection argument
_BY_CLASS = "by class"  # rule outcome placeholder: 4 -> transient, 5 -> permanent
_ANY = frozenset(Stage)
_SESSION = frozenset({Stage.CONNECT, Stage.GREETING, Stage.EHLO, Stage.STARTTLS, Stage.AUTH})
_MESSAGE = _ANY - _SESSION


def _re(*alternatives: str) -> re.Pattern[str]:
    return re.compile("|".join(alternatives), re.IGNORECASE)


@dataclass(frozen=True)
class Rule:
    """One row of the table: where and what it matches, and the verdict it gives.

    A rule matches when the stage, the basic code and the class all fit and,
    if it has patterns, the enhanced code or the text matches one of them.
    """

    name: str
    outcome: Outcome | str
    reason: str
    stages: frozenset[Stage] = _ANY
    codes: range | tuple[int, ...] = range(400, 600)
    classes: str = "45"
    enhanced: re.Pattern[str] | None = None
    text: re.Pattern[str] | None = None
    # For route faults: if no other route is left, permanent for a 5xx class
    # (else transient).
    last_by_class: bool = False
    throttle: bool = False
    split: bool = False
    same_route: bool = False
    give_up: bool = False

    def matches(self, stage: Stage, code: int, klass: str, enhanced: str, text: str) -> bool:
        if stage not in self.stages or code not in self.codes or klass not in self.classes:
            return False
        if self.enhanced is None and self.text is None:
            return True
        return bool(
            (self.enhanced and enhanced and self.enhanced.match(enhanced))
            or (self.text and self.text.search(text))
        )


RF, TR, PE = Outcome.ROUTE_FAULT, Outcome.TRANSIENT, Outcome.PERMANENT

# fmt: off
RULES: tuple[Rule, ...] = (
    Rule("content_domain_listed", _CONTENT, "a domain in the message is on a blocklist",
         classes="5", text=_re(r"\b(?:DBL|SURBL|URIBL)\b")),
    # Some large receivers send their rate limits as 5xx: the route slows
    # down and the message is retried later (another route may take it now).
    Rule("rate_limited", RF, "the receiver limits how fast this route may send", throttle=True,
         codes=range(500, 600),
         text=_re(r"rate[- ]?limit|frequency limit|too frequent|throttl|unusual sending activity",
                  r"too many (?:messages|mails|e-?mails|connections|sessions|concurrent)",
                  r"(?:sending|send|message|submission|connection) ?(?:rate|quota|limit) ?"
                  r"(?:exceeded|reached)",
                  r"(?:daily|hourly) (?:user )?(?:sending |message )?(?:quota|limit)",
                  r"maximum credits|credits exceeded")),
    Rule("ip_reputation", RF, "the sending IP is blocklisted or has a poor reputation",
         last_by_class=True, enhanced=_re(r"5\.7\.6(?:0[6-9]|[1-4]\d)$"),
         text=_re(r"spamhaus|barracuda|spamcop|\bsorbs\b|\bRBL\b|\bDNSBLs?\b",
                  r"listed (?:at|on|in|by)\b|blocked using|block ?list|black ?list",
                  r"poor reputation|\bIP reputation|reputation of (?:the |your )?sending IP",
                  r"unusual rate of unsolicited mail originating from your IP",
                  r"banned sending IP|banned sender|IP not in (?:whitelist|allowlist)",
                  r"IP you're using to send mail is not authorized",
                  r"(?:from|of) (?:this|your|the sending) IP\b",
                  r"messages from \[?[\d.:a-f]+\]? (?:will be )?"
                  r"(?:temporarily|permanently) deferred")),
    # A block of the sending host or network, in the receiver's own words.
    Rule("sending_host_refused", RF, "the receiver refuses the sending host or network",
         last_by_class=True,
         text=_re(r"client host (?:\[[^\]]*\] )?(?:rejected|blocked|refused)|client blocked",
                  r"cannot find your (?:reverse )?host ?name|helo command rejected",
                  r"(?:host|client|sender|sending|your|source) (?:IP|network|host)(?: address)?"
                  r"\b(?:[^.;\n]|\.\d){0,40}?\b(?:not (?:allowed|permitted|accepted)|blocked|"
                  r"refused|rejected|banned|denied)",
                  r"connections? (?:will )?not (?:be )?accepted from",
                  r"your access to (?:this mail system|submit messages)",
                  r"block\w*\W[^\n]{0,80}?https?://\S*(?:ipcheck|dnsbl|lookup|query|reputation)",
                  r"https?://\S*[?&]ip=[\d.:a-f]{3,}")),
    Rule("sender_authentication", RF, "SPF, DKIM, DMARC or reverse DNS failed for this route",
         last_by_class=True, enhanced=_re(r"[45]\.7\.2[0-6]$"),
         text=_re(r"\b(?:SPF|DKIM|DMARC|PTR)\b|reverse DNS|sender is unauthenticated")),
    Rule("relay_denied", RF, "the relay will not relay for us", last_by_class=True,
         text=_re(r"relay(?:ing)?(?: access)? (?:is )?(?:denied|not permitted|not allowed|"
                  r"prohibited)|(?:not permitted|unable) to relay|do not relay|not a gateway",
                  r"relaying (?:mail )?to \S+ (?:is )?not allowed")),
    # An ESP's endpoint refusing what the route's account may do: the route
    # must be fixed, the recipient is not at fault.
    Rule("account_refused", RF, "the relay account may not send (permissions or account state)",
         stages=_ANY - {Stage.RCPT},
         text=_re(r"not authori[sz]ed to (?:perform|send from|use)",
                  r"(?:your|sending) (?:\w+ )?account\b[^.\n]{0,30}?\b(?:paused|suspended|disabled|"
                  r"deactivated|terminated|blocked|under review|on probation|not (?:yet )?"
                  r"(?:active|activated|enabled|approved|verified))",
                  r"(?:paused|suspended|disabled) for (?:this|your) account",
                  r"account (?:is |has been )?(?:paused|suspended|deactivated|terminated|"
                  r"under review|pending approval)",
                  r"sending (?:is |has been )?(?:paused|suspended|disabled)",
                  r"outgoing (?:mail |email )?blocked|pending approval",
                  r"(?:not|un)verified (?:sender|domain|identity)|not verified for (?:this|your) "
                  r"account",
                  r"domain (?:\S+ )?is not allowed to send",
                  r"configuration set (?:\S+ )?does not exist",
                  r"permission denied|do(?:es)? not have permission")),
    Rule("route_limit", RF, "the relay's sending limit is reached", codes=range(400, 500),
         throttle=True,
         text=_re(r"throttl|sending rate|relay limit|(?:daily|hourly) (?:message |sending )?"
                  r"(?:quota|limit)|message quota|maximum credits|credits exceeded",
                  r"received this hour|too frequent connects",
                  r"(?:per (?:second|minute|hour)|rate) limit exceeded")),
    Rule("auth_failed", RF, "the relay refused our credentials", codes=(530, 534, 535, 538)),
    Rule("auth_or_tls_unavailable", RF, "the relay cannot do AUTH or TLS now", codes=(454,)),
    Rule("service_closing", TR, "the server is closing the session", codes=(421,)),
    Rule("session_refused", RF, "the relay refused the session", stages=_SESSION),
    Rule("sender_not_allowed", RF, "the relay account may not send as this sender",
         stages=_MESSAGE,
         text=_re(r"not verified|identities failed|sender identity|sender signature",
                  r"\bsend as\b|not owned by|unauthenticated senders|sandbox subdomains",
                  r"authorized recipients|sending paused")),
    Rule("too_many_recipients", TR, "too many recipients for one transaction",
         stages=frozenset({Stage.RCPT}), split=True, enhanced=_re(r"[45]\.5\.3$"),
         text=_re(r"too many recipients|separate transaction",
                  r"multiple destination domains per transaction")),
    Rule("recipient_address", _BY_CLASS, "the recipient's address is not valid",
         stages=frozenset({Stage.RCPT, Stage.DOT}),
         enhanced=_re(r"[45]\.1\.(?:1|2|3|6|10)$"),
         text=_re(r"bad (?:recipient |destination )?address syntax")),
    Rule("mailbox_unavailable", _BY_CLASS, "the recipient's mailbox is disabled or not taking mail",
         stages=frozenset({Stage.RCPT, Stage.DOT}), enhanced=_re(r"[45]\.2\.1$")),
    # After the final dot, a syntax error concerns the message itself (a line
    # too long, say): another route may take it, but if every route refuses,
    # retrying until the lifetime ends cannot help.
    Rule("message_refused", RF, "the relay refused the message's form",
         stages=frozenset({Stage.DOT}), codes=range(500, 505), last_by_class=True),
    Rule("protocol_error", RF, "the relay did not understand us", codes=range(500, 505)),
    Rule("greylisted", TR, "greylisted: retry later through the same route", codes=(450, 451),
         stages=_MESSAGE, classes="4", same_route=True,
         enhanced=_re(r"4\.7\.1$"), text=_re(r"gr[ae]ylist")),
    Rule("mailbox_full", TR, "the recipient's mailbox is full", give_up=True,
         stages=frozenset({Stage.RCPT, Stage.DATA, Stage.DOT}), enhanced=_re(r"[45]\.2\.2$"),
         text=_re(r"mailbox (?:is )?full|over ?quota|out of storage")),
    Rule("message_too_large", RF, "the message is too large for this route",
         stages=_MESSAGE, last_by_class=True, enhanced=_re(r"[45]\.(?:3\.4|2\.3)$"),
         text=_re(r"(?:message|mail)(?: size)? (?:is )?(?:too (?:large|big)|exceeds)",
                  r"size (?:limit|exceeds)|exceeds (?:the )?(?:\w+ )?(?:message )?size")),
    Rule("content_rejected", _CONTENT, "the message was rejected for its content",
         stages=frozenset({Stage.DATA, Stage.DOT}), classes="5", last_by_class=True,
         enhanced=_re(r"5\.[67]\.\d+$"),
         text=_re(r"spam|virus|malware|phish|unsolicited|content|policy|suspicious|blocked")),
    Rule("sender_refused", RF, "the relay refused the sender", stages=frozenset({Stage.MAIL}),
         classes="5"),
    Rule("temporary", TR, "temporary failure", classes="4"),
    Rule("permanent", PE, "permanent failure", classes="5"),
)
# fmt: on


def classify(
    stage: Stage | str,
    code: int | None,
    text: str = "",
    enhanced: str = "",
    *,
    content_rejection: Outcome = Outcome.PERMANENT,
    mailbox_full_give_up: timedelta = MAILBOX_FULL_GIVE_UP,
) -> Verdict:
    """Classify a reply ``code``/``text`` received at ``stage``.

    ``content_rejection`` is the outcome of a message refused for its content
    (spam, virus, policy): permanent by default; route_fault tries the other
    routes first, transient retries later.
    """
    stage = Stage(stage)
    if not enhanced:
        enhanced, _ = parse_enhanced(text)
    if code is not None and 200 <= code < 400:
        return _accepted(stage, code, enhanced)
    where = " ".join(str(p) for p in (code, enhanced) if p)
    if code is None:
        if stage is Stage.DOT:
            return Verdict(Outcome.UNCERTAIN, "no reply to the final dot", session_over=True)
        return Verdict(RF, f"no reply at {stage}", session_over=True, if_last_route=TR)
    if not 200 <= code <= 599:
        if stage is Stage.DOT:
            return Verdict(
                Outcome.UNCERTAIN, f"unreadable reply to the final dot ({code})", session_over=True
            )
        return Verdict(RF, f"unreadable reply at {stage} ({code})", if_last_route=TR)
    # The basic code decides whether to retry (RFC 3463 section 2).
    klass = str(code)[0]
    rule = next(r for r in RULES if r.matches(stage, code, klass, enhanced, text or ""))
    by_class = TR if klass == "4" else PE
    outcome = {_CONTENT: content_rejection, _BY_CLASS: by_class}.get(rule.outcome, rule.outcome)
    last = None
    if outcome is RF:
        last = by_class if rule.last_by_class else TR
    return Verdict(
        Outcome(outcome),
        f"{rule.reason} ({where})",
        throttle=rule.throttle or code == 421,
        split=rule.split,
        session_over=code == 421,
        same_route=rule.same_route,
        if_last_route=last,
        give_up_after=mailbox_full_give_up if rule.give_up else None,
        rule=rule.name,
    )


@lru_cache(maxsize=64)
def _accepted(stage: Stage, code: int, enhanced: str) -> Verdict:
    # Verdicts are frozen: every "250 2.0.0" at the final dot shares one.
    where = " ".join(str(p) for p in (code, enhanced) if p)
    return Verdict(Outcome.DELIVERED, f"accepted at {stage} ({where})")


def classify_exception(
    stage: Stage | str, exc: BaseException, *, after_dot: bool = False
) -> Verdict:
    """Classify a failure that produced no usable reply: refused, timed out, TLS, dropped.

    smtplib errors that carry the server's reply are classified as that reply.
    ``after_dot``: the message body and the final dot were sent, so the server
    may have the message: losing the connection now is uncertain, not a fault.
    """
    stage = Stage(stage)
    if _reply_line_too_long(exc):
        # smtplib's own "500 Line too long." for a reply line over 8 KiB: the
        # relay's reply is broken, not a refusal.
        return classify(stage, -1, "a reply line longer than smtplib reads")
    if isinstance(exc, smtplib.SMTPResponseException):
        reply = exc.smtp_error
        if isinstance(reply, bytes):
            reply = reply.decode("utf-8", "replace")
        return classify(stage, exc.smtp_code, str(reply))
    detail = f"{type(exc).__name__}: {str(exc)[:200]}".rstrip(": ")
    if after_dot:
        return Verdict(
            Outcome.UNCERTAIN, f"connection lost after the final dot ({detail})", session_over=True
        )
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = f"TLS certificate not trusted: {getattr(exc, 'verify_message', '') or exc}"
    elif isinstance(exc, ssl.SSLError):
        reason = f"TLS failed at {stage} ({detail})"
    elif isinstance(exc, smtplib.SMTPServerDisconnected) and isinstance(
        exc.__context__, TimeoutError
    ):
        reason = f"timed out at {stage}"  # smtplib reports a read timeout as a disconnect
    elif isinstance(exc, smtplib.SMTPServerDisconnected):
        reason = f"the relay closed the connection at {stage}"
    elif isinstance(exc, smtplib.SMTPNotSupportedError):
        reason = f"the relay does not support what {stage} needs ({detail})"
    elif isinstance(exc, TimeoutError):
        reason = f"timed out at {stage}"
    elif isinstance(exc, ConnectionRefusedError):
        reason = "connection refused"
    elif isinstance(exc, socket.gaierror):
        reason = f"the relay's host name does not resolve ({detail})"
    else:
        reason = f"connection failed at {stage} ({detail})"
    return Verdict(RF, reason, session_over=True, if_last_route=TR)


def _reply_line_too_long(exc: BaseException) -> bool:
    # Replies from the relay carry bytes; this one is made by smtplib (a str).
    return (
        isinstance(exc, smtplib.SMTPResponseException)
        and exc.smtp_code == 500
        and exc.smtp_error == "Line too long."
    )
