"""The reply table against replies as the providers and MTAs send them.

IPs are the documentation range (203.0.113.0/24); addresses are example.*.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from dataclasses import FrozenInstanceError
from datetime import timedelta

import pytest

from django_smtprelay.conf import DEFAULTS
from django_smtprelay.replies import (
    MAILBOX_FULL_GIVE_UP,
    Outcome,
    Stage,
    Verdict,
    _re,
    classify,
    classify_esp_http,
    classify_esp_recipient,
    classify_exception,
    esp_route_fault,
    parse_enhanced,
)

from .reply_corpus import FLAGS, REPLIES, RF, SOURCES, D, P, T, U


@pytest.mark.parametrize(("stage", "code", "text", "outcome", "last", "flags"), REPLIES)
def test_real_replies(stage, code, text, outcome, last, flags):
    verdict = classify(stage, code, text)
    got = {
        "outcome": verdict.outcome,
        "last": verdict.final_outcome(other_route_left=False),
        "throttle": verdict.throttle,
        "split": verdict.split,
        "session_over": verdict.session_over,
        "same_route": verdict.same_route,
        "capped": verdict.give_up_after is not None,
    }
    want = dict.fromkeys(FLAGS, False) | flags
    want["outcome"] = outcome
    want["last"] = last or (T if outcome is RF else outcome)
    assert got == want, verdict.reason


@pytest.mark.parametrize(
    ("text", "enhanced", "rest"),
    [
        ("5.1.1 User unknown", "5.1.1", "User unknown"),
        ("  4.7.650 rate limited", "4.7.650", "rate limited"),
        ("5.1.10 RESOLVER.ADR.RecipientNotFound", "5.1.10", "RESOLVER.ADR.RecipientNotFound"),
        ("#5.1.0 Address rejected.", "5.1.0", "Address rejected."),
        (
            "5.2.1 is disabled. Learn more at\n5.2.1  https://x/?p=DisabledUser",
            "5.2.1",
            "is disabled. Learn more at https://x/?p=DisabledUser",
        ),
        (
            "550-5.1.1 no such user\r\n550-5.1.1 check for typos\r\n550 5.1.1 gsmtp",
            "5.1.1",
            "no such user check for typos gsmtp",
        ),
        ("Unrouteable address", "", "Unrouteable address"),
        ("1 Requested mail action aborted", "", "1 Requested mail action aborted"),
        (
            "4.16.55.1; see https://postmaster.yahooinc.com",
            "",
            "4.16.55.1; see https://postmaster.yahooinc.com",
        ),
        ("203.0.113.5 found on one or more DNSBLs", "", "203.0.113.5 found on one or more DNSBLs"),
        ("3.1.1 not a status class", "", "3.1.1 not a status class"),
        (
            "4.1.1 unverified: said: 550 5.1.1 unknown",
            "4.1.1",
            "unverified: said: 550 5.1.1 unknown",
        ),
        ("", "", ""),
    ],
)
def test_parse_enhanced(text, enhanced, rest):
    assert parse_enhanced(text) == (enhanced, rest)


def test_the_corpus_is_large_and_every_reply_names_its_source():
    assert len(REPLIES) >= 150
    providers = {param.id.rsplit("-", 3)[0] for param in REPLIES}
    assert providers <= set(SOURCES)
    assert all(SOURCES.values())


# RFC 3463 section 2: the basic code says whether to retry; the enhanced code
# says what happened. Mismatched replies are rare but real (a proxy rewriting
# one code and not the other).
@pytest.mark.parametrize(
    ("code", "text", "outcome", "last"),
    [
        (550, "4.2.2 mailbox full, try later", T, T),  # mailbox full is retried, capped
        (450, "5.1.1 user unknown", T, T),
        (550, "4.1.1 user unknown", P, P),
        (451, "5.7.1 Service unavailable - try again later", T, T),
        (554, "4.7.1 Client host [203.0.113.5] blocked using zen.spamhaus.org", RF, P),
        (450, "5.7.1 Client host [203.0.113.5] blocked using zen.spamhaus.org", RF, T),
        (452, "5.2.2 over quota", T, T),
    ],
)
def test_the_basic_code_decides_whether_to_retry(code, text, outcome, last):
    verdict = classify(Stage.RCPT, code, text)
    assert verdict.outcome is outcome, verdict.reason
    assert verdict.final_outcome(other_route_left=False) is last
    # The enhanced code is still the one reported.
    assert text.split()[0] in verdict.reason


def test_explicit_enhanced_argument_is_used_when_text_has_none():
    assert classify(Stage.RCPT, 550, "User unknown", enhanced="5.1.1").rule == "recipient_address"
    assert classify(Stage.RCPT, 550, "Requested action not taken").rule == "permanent"


@pytest.mark.parametrize("stage", list(Stage))
def test_421_is_transient_throttled_and_ends_the_session_at_every_stage(stage):
    verdict = classify(stage, 421, "4.3.2 Service not available, closing transmission channel")
    assert (verdict.outcome, verdict.throttle, verdict.session_over) == (T, True, True)


@pytest.mark.parametrize("stage", list(Stage))
def test_success_codes_deliver_at_every_stage(stage):
    assert classify(stage, 250, "2.0.0 Ok").outcome is D
    assert classify(stage, 354, "End data with <CR><LF>.<CR><LF>").outcome is D


@pytest.mark.parametrize("stage", [Stage.CONNECT, Stage.GREETING, Stage.EHLO, Stage.AUTH])
def test_refusals_before_mail_are_route_faults(stage):
    assert classify(stage, 554, "5.7.1 Access denied").outcome is RF
    assert classify(stage, 450, "4.3.2 Try later").outcome is RF


def test_no_reply_is_uncertain_only_after_the_final_dot():
    assert classify(Stage.DOT, None).outcome is U
    lost = classify(Stage.RCPT, None)
    assert (lost.outcome, lost.session_over) == (RF, True)


@pytest.mark.parametrize("code", [-1, 0, 199, 600, 999])
def test_codes_outside_the_protocol_are_route_faults(code):
    assert classify(Stage.RCPT, code, "garbled").outcome is RF


def test_stage_may_be_given_by_name():
    assert classify("rcpt", 550, "5.1.1 User unknown") == classify(
        Stage.RCPT, 550, "5.1.1 User unknown"
    )


@pytest.mark.parametrize("choice", [Outcome.ROUTE_FAULT, Outcome.TRANSIENT, Outcome.PERMANENT])
def test_content_rejection_outcome_is_configurable(choice):
    content = "5.7.1 [CS01] Message rejected due to local policy"
    verdict = classify(Stage.DOT, 554, content, content_rejection=choice)
    assert verdict.outcome is choice
    # Only content rejections follow the choice.
    assert classify(Stage.DOT, 554, "5.7.1 Relay access denied", content_rejection=choice).rule == (
        "relay_denied"
    )
    assert classify(Stage.RCPT, 550, "5.1.1 User unknown", content_rejection=choice).outcome is P


def test_content_rejection_as_route_fault_is_permanent_on_the_last_route():
    verdict = classify(Stage.DOT, 554, "5.7.1 spam", content_rejection=Outcome.ROUTE_FAULT)
    assert verdict.final_outcome(other_route_left=True) is RF
    assert verdict.final_outcome(other_route_left=False) is P


def test_mailbox_full_gives_up_after_the_default_or_given_time():
    full = "5.2.2 mailbox full"
    assert classify(Stage.RCPT, 552, full).give_up_after == MAILBOX_FULL_GIVE_UP
    # The cap only means something if it ends retries before the queue lifetime does.
    assert timedelta(seconds=DEFAULTS["MAX_LIFETIME_SECONDS"]) > MAILBOX_FULL_GIVE_UP
    hour = timedelta(hours=1)
    assert classify(Stage.RCPT, 552, full, mailbox_full_give_up=hour).give_up_after == hour
    assert classify(Stage.RCPT, 450, "4.2.1 try later").give_up_after is None


def test_final_outcome_keeps_non_route_outcomes():
    for verdict in (Verdict(T, "x"), Verdict(P, "x"), Verdict(D, "x")):
        assert verdict.final_outcome(other_route_left=False) is verdict.outcome
    assert Verdict(RF, "x").final_outcome(other_route_left=False) is T
    assert Verdict(RF, "x", if_last_route=P).final_outcome(other_route_left=True) is RF


def test_verdict_is_frozen():
    with pytest.raises(FrozenInstanceError):
        classify(Stage.RCPT, 550, "5.1.1 x").outcome = T


def test_reason_carries_the_codes():
    assert "552 5.3.4" in classify(Stage.DOT, 552, "5.3.4 Message size exceeds fixed limit").reason


def test_microsoft_banned_ip_codes_are_route_faults_without_keywords():
    for enhanced in ("5.7.606", "5.7.627", "5.7.649"):
        assert classify(Stage.MAIL, 550, f"{enhanced} Access denied").rule == "ip_reputation"
    assert classify(Stage.MAIL, 550, "5.7.650 Access denied").rule != "ip_reputation"


# Exceptions: real ones, raised by the socket, ssl and smtplib modules where a
# test can make them happen on this machine.


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _raised(func):
    try:
        func()
    except Exception as exc:
        return exc
    raise AssertionError("expected an exception")


def test_connection_refused():
    exc = _raised(lambda: socket.create_connection(("127.0.0.1", _closed_port()), timeout=2))
    assert isinstance(exc, ConnectionRefusedError)
    verdict = classify_exception(Stage.CONNECT, exc)
    assert (verdict.outcome, verdict.session_over, verdict.reason) == (
        RF,
        True,
        "connection refused",
    )


def test_timeout_is_a_route_fault_before_the_dot_and_uncertain_after():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        client = socket.create_connection(server.getsockname(), timeout=0.05)
        with client:
            exc = _raised(lambda: client.recv(1))
    assert isinstance(exc, TimeoutError)
    assert classify_exception(Stage.GREETING, exc).outcome is RF
    assert "timed out" in classify_exception(Stage.GREETING, exc).reason
    assert classify_exception(Stage.DOT, exc, after_dot=True).outcome is U


def test_server_disconnected():
    exc = _raised(lambda: smtplib.SMTP().ehlo())
    assert isinstance(exc, smtplib.SMTPServerDisconnected)
    assert classify_exception(Stage.EHLO, exc).outcome is RF
    lost = classify_exception(Stage.DOT, exc, after_dot=True)
    assert (lost.outcome, lost.session_over) == (U, True)


def test_certificate_verification_failure():
    exc = ssl.SSLCertVerificationError(
        1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate"
    )
    exc.verify_message = "self-signed certificate"
    verdict = classify_exception(Stage.STARTTLS, exc)
    assert verdict.outcome is RF
    assert verdict.reason == "TLS certificate not trusted: self-signed certificate"


def test_other_tls_errors():
    ctx = ssl.create_default_context()
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.create_connection(server.getsockname(), timeout=2) as raw:
            conn, _ = server.accept()
            with conn:
                conn.sendall(b"220 not a TLS server\r\n" * 4)
                conn.close()
                exc = _raised(lambda: ctx.wrap_socket(raw, server_hostname="localhost"))
    assert isinstance(exc, (ssl.SSLError, ConnectionError))
    assert classify_exception(Stage.STARTTLS, exc).outcome is RF


def test_unresolvable_relay_host():
    exc = _raised(lambda: socket.getaddrinfo("relay.invalid", 25))
    assert isinstance(exc, socket.gaierror)
    assert classify_exception(Stage.CONNECT, exc).outcome is RF


@pytest.mark.parametrize(
    ("exc", "after_dot", "outcome"),
    [
        (
            smtplib.SMTPAuthenticationError(535, b"5.7.8 Username and Password not accepted"),
            False,
            RF,
        ),
        (
            smtplib.SMTPSenderRefused(
                553, b"5.7.1 Sender address rejected: not owned by user", "a@example.com"
            ),
            False,
            RF,
        ),
        (smtplib.SMTPDataError(550, b"5.7.1 Message rejected as spam"), True, P),
        (smtplib.SMTPDataError(421, b"4.3.0 Temporary System Problem"), True, T),
        # A garbled reply to the dot may hide an acceptance.
        (smtplib.SMTPResponseException(-1, b"garbled"), False, U),
    ],
)
def test_smtplib_errors_with_a_reply_are_classified_as_that_reply(exc, after_dot, outcome):
    assert classify_exception(Stage.DOT, exc, after_dot=after_dot).outcome is outcome


@pytest.mark.parametrize(
    "text",
    [
        "5.5.2 Line too long",
        "5.5.2 Message line too long",
        "5.5.4 Syntax error in message",
        "5.5.1 Bad sequence of commands",
        "5.5.4 Command parameter not implemented",
    ],
)
@pytest.mark.parametrize("code", [500, 501, 503, 504])
def test_a_syntax_refusal_after_the_dot_fails_the_message_once_no_route_is_left(code, text):
    verdict = classify(Stage.DOT, code, text)
    assert verdict.outcome is RF  # another route may take it
    assert verdict.final_outcome(other_route_left=False) is P
    assert verdict.rule == "message_refused"
    assert str(code) in verdict.reason


@pytest.mark.parametrize("stage", [Stage.MAIL, Stage.RCPT, Stage.DATA])
def test_a_syntax_refusal_before_the_dot_stays_a_protocol_error(stage):
    # Before the message's content, a 500-504 is about our commands or the
    # relay, not the message: deferred when no route is left.
    verdict = classify(stage, 500, "5.5.2 Syntax error, command unrecognized")
    assert verdict.rule in ("protocol_error", "sender_refused")
    assert verdict.final_outcome(other_route_left=False) is T


def test_a_temporary_basic_code_after_the_dot_stays_transient_on_the_last_route():
    verdict = classify(Stage.DOT, 451, "5.5.2 Line too long, try later")
    assert verdict.final_outcome(other_route_left=False) is T
    # A 5xx syntax refusal with a 4.x.x code is still a 5xx: fails once no route is left.
    last = classify(Stage.DOT, 500, "4.3.0 Line too long").final_outcome(other_route_left=False)
    assert last is P


def test_an_unreadable_reply_to_the_final_dot_is_uncertain():
    # The relay may have taken the message: retried on the same route, flagged.
    verdict = classify(Stage.DOT, -1, "HTTP/1.1 400 Bad Request")
    assert (verdict.outcome, verdict.session_over) == (U, True)
    assert classify(Stage.DOT, 25, "").outcome is U  # a reply cut off after two digits


def test_an_overlong_reply_line_is_unreadable_not_a_refusal_of_the_message():
    # smtplib makes up "500 Line too long." for a reply line over 8 KiB.
    exc = smtplib.SMTPResponseException(500, "Line too long.")
    assert classify_exception(Stage.DOT, exc, after_dot=True).outcome is U
    before = classify_exception(Stage.RCPT, exc)
    assert (before.outcome, before.final_outcome(other_route_left=False)) == (RF, T)
    assert "unreadable" in before.reason


def test_a_read_timeout_reported_as_a_disconnect_says_it_timed_out():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        conn = smtplib.SMTP(timeout=0.05)
        exc = _raised(lambda: conn.connect(*server.getsockname()))
    assert isinstance(exc, smtplib.SMTPServerDisconnected)
    assert classify_exception(Stage.GREETING, exc).reason == "timed out at greeting"


# The families, whatever the code and stage: each phrase as receivers write it.

HOST_REFUSALS = [
    "Client host rejected: cannot find your reverse hostname, [203.0.113.5]",
    "<unknown[203.0.113.5]>: Client host rejected: Access denied",
    "Your host network is not allowed to send mail here",
    "Sending IP 203.0.113.5 is blocked by local policy",
    "Blocked - see https://ipcheck.proofpoint.com/?ip=203.0.113.5",
    "Mail from 203.0.113.5 refused, see https://example.net/lookup?ip=203.0.113.5",
    "Connections will not be accepted from 203.0.113.5",
    "Relaying mail to example.org is not allowed",
    "Your access to this mail system has been rejected",
]


@pytest.mark.parametrize("text", HOST_REFUSALS)
@pytest.mark.parametrize("stage", [Stage.MAIL, Stage.RCPT, Stage.DOT])
@pytest.mark.parametrize("prefix", ["550 ", "554 ", "553 5.7.1 ", "550 5.7.1 ", "450 4.7.1 "])
def test_a_refused_sending_host_is_a_route_fault_failing_only_on_the_last_route(
    text, stage, prefix
):
    code, _, enhanced = prefix.partition(" ")
    verdict = classify(stage, int(code), f"{enhanced}{text}")
    assert verdict.outcome is RF, verdict.reason
    assert verdict.final_outcome(other_route_left=True) is RF
    assert verdict.final_outcome(other_route_left=False) is (P if code[0] == "5" else T)


ACCOUNT_REFUSALS = [
    "Access denied: User arn:aws:iam::123456789012:user/x is not authorized to perform "
    "`ses:SendRawEmail'",
    "Message rejected: Sending paused for this account.",
    "You are not authorized to send from that email address",
    "Your account has been suspended, contact support",
    "Sender not verified for this account",
    "Domain example.com is not allowed to send: Free accounts are for test purposes only",
    "Your SMTP account is not yet activated",
    "Email Outgoing Blocked.",
]


@pytest.mark.parametrize("text", ACCOUNT_REFUSALS)
@pytest.mark.parametrize("stage", [Stage.AUTH, Stage.MAIL, Stage.DATA, Stage.DOT])
@pytest.mark.parametrize("code", [550, 553, 554, 502])
def test_an_esp_refusing_the_account_never_fails_a_recipient(text, stage, code):
    verdict = classify(stage, code, text)
    assert verdict.outcome is RF, verdict.reason
    assert verdict.final_outcome(other_route_left=False) is T
    assert not verdict.throttle


def test_an_account_phrase_at_rcpt_is_about_the_recipient():
    # "This account has been disabled" to RCPT is the recipient's mailbox.
    assert classify(Stage.RCPT, 550, "5.2.1 This account has been disabled").outcome is P


RATE_LIMITS = [
    "Connection frequency limited",
    "Ip frequency limited",
    "Too many messages from your IP, try again later",
    "Too many connections from 203.0.113.5",
    "5.4.5 Daily user sending limit exceeded",
    "Message rate limit exceeded",
    "Submission quota exceeded",
    "Unusual sending activity detected. Please try after sometime",
]


@pytest.mark.parametrize("text", RATE_LIMITS)
@pytest.mark.parametrize("stage", [Stage.GREETING, Stage.MAIL, Stage.RCPT, Stage.DOT])
@pytest.mark.parametrize("code", [550, 554])
def test_a_5xx_rate_limit_throttles_the_route_and_is_retried(text, stage, code):
    verdict = classify(stage, code, text)
    assert (verdict.outcome, verdict.throttle, verdict.rule) == (RF, True, "rate_limited")
    assert verdict.final_outcome(other_route_left=False) is T


@pytest.mark.parametrize(
    "text",
    [
        "5.2.2 Mailbox quota exceeded",
        "5.3.4 Message size limit exceeded",
        "5.7.1 Our system has detected an unusual rate of unsolicited mail originating from "
        "your IP address. mail sent from your IP address has been blocked.",
    ],
)
def test_what_is_not_a_rate_limit(text):
    assert classify(Stage.DOT, 552, text).rule != "rate_limited"


# Every field that tells the engine what to do, the reason text included (it is
# shown on the attempt and in the admin): what a verdict says, as a row.


def _says(verdict: Verdict) -> tuple:
    return (
        verdict.outcome,
        verdict.reason,
        verdict.final_outcome(other_route_left=False),
        verdict.throttle,
        verdict.split,
        verdict.session_over,
        verdict.same_route,
        verdict.give_up_after,
        verdict.rule,
    )


@pytest.mark.parametrize(
    ("stage", "code", "text", "says"),
    [
        # The edges of "accepted" (200-399), the codes in the reason.
        (Stage.DOT, 200, "2.6.0 queued as 4ZxY", (D, "accepted at dot (200 2.6.0)", D)),
        (Stage.RCPT, 399, "", (D, "accepted at rcpt (399)", D)),
        (Stage.RCPT, 400, "", (T, "temporary failure (400)", T, False, False, False, False,
                               None, "temporary")),
        # The edges of the protocol's codes (200-599).
        (Stage.RCPT, 599, "", (P, "permanent failure (599)", P, False, False, False, False,
                               None, "permanent")),
        (Stage.RCPT, 199, "", (RF, "unreadable reply at rcpt (199)", T, False, False, False,
                               False, None, "")),
        (Stage.DOT, 700, "", (U, "unreadable reply to the final dot (700)", U, False, False,
                              True, False, None, "")),
        # No reply at all.
        (Stage.DOT, None, "", (U, "no reply to the final dot", U, False, False, True, False,
                               None, "")),
        (Stage.RCPT, None, "", (RF, "no reply at rcpt", T, False, False, True, False, None, "")),
    ],
)  # fmt: skip
def test_what_a_verdict_says_at_the_edges(stage, code, text, says):
    got = _says(classify(stage, code, text))
    assert got[: len(says)] == says


def _chained_timeout() -> smtplib.SMTPServerDisconnected:
    # As smtplib raises it: a read timed out, reported as a disconnect.
    try:
        try:
            raise TimeoutError("timed out")
        except TimeoutError:
            # Implicitly chained (__context__), as smtplib does.
            raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed: timed out")  # noqa: B904
    except smtplib.SMTPServerDisconnected as exc:
        return exc


@pytest.mark.parametrize(
    ("exc", "after_dot", "outcome", "reason"),
    [
        (smtplib.SMTPResponseException(500, "Line too long."), False, RF,
         "unreadable reply at rcpt (-1)"),
        # A reply that is not UTF-8 is read, its bad bytes replaced.
        (smtplib.SMTPResponseException(550, b"5.1.1 <b\xffb@example.com> unknown"), False, P,
         "the recipient's address is not valid (550 5.1.1)"),
        (OSError("Connection reset by peer"), True, U,
         "connection lost after the final dot (OSError: Connection reset by peer)"),
        # No message: the exception's name alone, no dangling colon.
        (OSError(), True, U, "connection lost after the final dot (OSError)"),
        # Only what ends the detail is stripped: the colon and space, not the message's letters.
        (OSError("MAX"), True, U, "connection lost after the final dot (OSError: MAX)"),
        # A long message is cut at 200 characters.
        (OSError("x" * 250), True, U,
         f"connection lost after the final dot (OSError: {'x' * 200})"),
        # Made by hand (not by a handshake), it has no verify_message: the error says why.
        (ssl.SSLCertVerificationError(1, "self-signed certificate"), False, RF,
         "TLS certificate not trusted: self-signed certificate"),
        (ssl.SSLError(1, "wrong version number"), False, RF,
         "TLS failed at rcpt (SSLError: wrong version number)"),
        (_chained_timeout(), False, RF, "timed out at rcpt"),
        (smtplib.SMTPServerDisconnected("Connection unexpectedly closed"), False, RF,
         "the relay closed the connection at rcpt"),
        (smtplib.SMTPNotSupportedError("SMTPUTF8 not supported"), False, RF,
         "the relay does not support what rcpt needs "
         "(SMTPNotSupportedError: SMTPUTF8 not supported)"),
        (TimeoutError("timed out"), False, RF, "timed out at rcpt"),
        (ConnectionRefusedError(111, "Connection refused"), False, RF, "connection refused"),
        (socket.gaierror(-2, "Name or service not known"), False, RF,
         "the relay's host name does not resolve (gaierror: [Errno -2] Name or service not known)"),
        (OSError(113, "No route to host"), False, RF,
         "connection failed at rcpt (OSError: [Errno 113] No route to host)"),
    ],
)  # fmt: skip
def test_what_an_exception_verdict_says(exc, after_dot, outcome, reason):
    verdict = classify_exception(Stage.RCPT, exc, after_dot=after_dot)
    last = T if outcome is RF else outcome
    assert _says(verdict)[:3] == (outcome, reason, last)
    # No reply at all: nothing more can be sent on that connection. A reply,
    # even an unreadable one, leaves it to the engine.
    assert verdict.session_over is not isinstance(exc, smtplib.SMTPResponseException)


def test_rule_patterns_are_alternatives_matched_without_regard_to_case():
    pattern = _re(r"rate[- ]?limit", r"too many")
    assert pattern.search("452 4.7.28 RATE LIMIT exceeded")
    assert pattern.search("421 Too Many connections")
    assert not pattern.search("limit|too")
    assert pattern.pattern == r"rate[- ]?limit|too many"


# ESP routes (README, "ESP routes"): the HTTP status of the answer to the send
# request, its text for a 4xx, and each recipient's status.


@pytest.mark.parametrize(
    ("status", "text", "says"),
    [
        (429, "", (RF, "the ESP's sending limit is reached (HTTP 429)", T, True,
                   "esp_rate_limited")),
        (500, "", (RF, "the ESP failed to take the message (HTTP 500)", T, False,
                   "esp_server_error")),
        (599, "", (RF, "the ESP failed to take the message (HTTP 599)", T, False,
                   "esp_server_error")),
        (401, "", (RF, "the ESP refused the route's credentials (HTTP 401): check its API key",
                   T, False, "esp_auth_failed")),
        (403, "", (RF, "the ESP refused the route's credentials (HTTP 403): check its API key",
                   T, False, "esp_auth_failed")),
        (404, "", (RF, "the ESP's API did not answer as expected (HTTP 404): check its API URL",
                   T, False, "esp_not_found")),
        (405, "", (RF, "the ESP's API did not answer as expected (HTTP 405): check its API URL",
                   T, False, "esp_not_found")),
        (408, "", (RF, "the ESP's API did not answer as expected (HTTP 408): check its API URL",
                   T, False, "esp_not_found")),
        (413, "", (RF, "the message is too large for the ESP (HTTP 413)", P, False,
                   "esp_too_large")),
        # Another 4xx: by its text, as an SMTP relay's reply after the final dot.
        (400, "Message size exceeds the limit", (RF, "the message is too large for this route "
                                                 "(HTTP 400)", P, False, "esp_message_too_large")),
        (400, "Sender address not verified for this account",
         (RF, "the relay account may not send (permissions or account state) (HTTP 400)", T,
          False, "esp_account_refused")),
        # The SMTP codes the words were read with are left out of the reason.
        (400, "5.7.1 Sender address not verified for this account",
         (RF, "the relay account may not send (permissions or account state) (HTTP 400)", T,
          False, "esp_account_refused")),
        (422, "The From address does not match a verified Sender Signature",
         (RF, "the relay account may not send as this sender (HTTP 422)", T, False,
          "esp_sender_not_allowed")),
        (400, "Invalid email address", (RF, "the ESP refused the message (HTTP 400)", P, False,
                                         "esp_refused")),
        (400, "", (RF, "the ESP refused the message (HTTP 400)", P, False, "esp_refused")),
        (499, "", (RF, "the ESP refused the message (HTTP 499)", P, False, "esp_refused")),
        # Not an error status: the answer could not be read (the ESP may have the message).
        (399, "", (U, "the ESP's answer could not be read (HTTP 399)", U, False,
                   "esp_unreadable")),
        (200, "", (U, "the ESP's answer could not be read (HTTP 200)", U, False,
                   "esp_unreadable")),
    ],
)  # fmt: skip
def test_an_esp_http_status(status, text, says):
    verdict = classify_esp_http(status, text)
    assert (
        verdict.outcome,
        verdict.reason,
        verdict.final_outcome(other_route_left=False),
        verdict.throttle,
        verdict.rule,
    ) == says
    assert (verdict.split, verdict.session_over, verdict.same_route) == (False, False, False)
    assert verdict.give_up_after is None


@pytest.mark.parametrize(
    ("status", "outcome", "reason"),
    [
        ("queued", D, "accepted by the ESP (queued)"),
        ("sent", D, "accepted by the ESP (sent)"),
        ("scheduled", D, "accepted by the ESP (scheduled)"),
        ("deferred", D, "accepted by the ESP (deferred: it keeps trying)"),
        ("delivered", D, "delivered by the ESP"),
        ("unknown", D, "accepted by the ESP (no status for this recipient)"),
        # No status, or one anymail does not name: the ESP took the request.
        (None, D, "accepted by the ESP (no status for this recipient)"),
        ("", D, "accepted by the ESP (no status for this recipient)"),
        ("on-hold", D, "accepted by the ESP (no status for this recipient)"),
        ("rejected", P, "the ESP refused this recipient (rejected)"),
        ("invalid", P, "the ESP found this recipient's address invalid"),
        ("bounced", P, "the ESP reports this recipient bounced"),
        ("complained", P, "the recipient complained: the ESP will not send"),
        ("unsubscribed", P, "the recipient unsubscribed: the ESP will not send"),
        ("failed", T, "the ESP could not send to this recipient now (failed)"),
    ],
)
def test_an_esp_recipient_status(status, outcome, reason):
    verdict = classify_esp_recipient(status)
    assert (verdict.outcome, verdict.reason, verdict.rule) == (
        outcome,
        reason,
        f"esp_{outcome.value}",
    )
    assert verdict.final_outcome(other_route_left=False) is outcome


@pytest.mark.parametrize(
    ("kwargs", "last", "rule"),
    [({}, T, "esp_route"), ({"last": P, "rule": "esp_cancelled"}, P, "esp_cancelled")],
)
def test_an_esp_route_fault(kwargs, last, rule):
    verdict = esp_route_fault("the route's backend cannot be loaded", **kwargs)
    assert (verdict.outcome, verdict.reason, verdict.rule) == (
        RF,
        "the route's backend cannot be loaded",
        rule,
    )
    assert verdict.final_outcome(other_route_left=True) is RF
    assert verdict.final_outcome(other_route_left=False) is last
    assert not (verdict.throttle or verdict.session_over or verdict.split)
