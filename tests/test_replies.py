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
    classify,
    classify_exception,
    parse_enhanced,
)

D, T, P, RF, U = (
    Outcome.DELIVERED,
    Outcome.TRANSIENT,
    Outcome.PERMANENT,
    Outcome.ROUTE_FAULT,
    Outcome.UNCERTAIN,
)
FLAGS = ("throttle", "split", "session_over", "same_route", "capped")


def r(provider, stage, code, text, outcome, last=None, **flags):
    """One row: ``last`` is the outcome when no other route is left."""
    assert set(flags) <= set(FLAGS), flags
    enhanced = parse_enhanced(text)[0] or "none"
    return pytest.param(
        stage, code, text, outcome, last, flags, id=f"{provider}-{stage}-{code}-{enhanced}"
    )


# fmt: off
REPLIES = [
    # Gmail / Google Workspace
    r("gmail", Stage.DOT, 250, "2.0.0 OK  1700000000 a1si123456 - gsmtp", D),
    r("gmail", Stage.RCPT, 550,
      "5.1.1 The email account that you tried to reach does not exist. Please try\n"
      "5.1.1 double-checking the recipient's email address for typos or\n"
      "5.1.1 unnecessary spaces. Learn more at\n"
      "5.1.1  https://support.google.com/mail/?p=NoSuchUser a1si123456 - gsmtp", P),
    r("gmail", Stage.RCPT, 550,
      "5.2.1 The email account that you tried to reach is disabled. Learn more at\n"
      "5.2.1  https://support.google.com/mail/?p=DisabledUser a1si123456 - gsmtp", P),
    r("gmail", Stage.RCPT, 550, "#5.1.0 Address rejected.", P),
    r("gmail", Stage.RCPT, 452,
      "4.2.2 The email account that you tried to reach is over quota. Please direct\n"
      "4.2.2 the recipient to\n"
      "4.2.2  https://support.google.com/mail/?p=OverQuotaTemp a1si123456 - gsmtp",
      T, capped=True),
    r("gmail", Stage.RCPT, 552,
      "5.2.2 The recipient's inbox is out of storage space. Please direct the\n"
      "5.2.2 recipient to\n"
      "5.2.2  https://support.google.com/mail/?p=OverQuotaPerm a1si123456 - gsmtp",
      T, capped=True),
    r("gmail", Stage.DOT, 552,
      "5.2.3 Your message exceeded Google's message size limits. Please visit\n"
      "5.2.3  https://support.google.com/mail/?p=MaxSizeError to view our size\n"
      "5.2.3 guidelines. a1si123456 - gsmtp", RF, P),
    r("gmail", Stage.RCPT, 452,
      "4.5.3 Your message has too many recipients. For more information regarding\n"
      "4.5.3 Google's sending limits, visit\n"
      "4.5.3  https://support.google.com/mail/?p=TooManyRecipientsError - gsmtp",
      T, split=True),
    r("gmail", Stage.RCPT, 452,
      "4.5.3 Domain policy size per transaction exceeded, please try this recipient "
      "in a separate transaction.", T, split=True),
    r("gmail", Stage.RCPT, 451,
      "4.3.0 Multiple destination domains per transaction is unsupported. Please try again.",
      T, split=True),
    r("gmail", Stage.MAIL, 421,
      "4.7.0 [203.0.113.5      15] Our system has detected an unusual rate of\n"
      "4.7.0 unsolicited mail originating from your IP address. To protect our\n"
      "4.7.0 users from spam, mail sent from your IP address has been temporarily\n"
      "4.7.0 rate limited. Please visit\n"
      "4.7.0  https://support.google.com/mail/?p=UnsolicitedRateLimitError to\n"
      "4.7.0 review our Bulk Email Senders Guidelines. a1si123456 - gsmtp",
      RF, T, throttle=True, session_over=True),
    r("gmail", Stage.RCPT, 550,
      "5.7.1 [203.0.113.5      15] Our system has detected an unusual rate of\n"
      "5.7.1 unsolicited mail originating from your IP address. To protect our\n"
      "5.7.1 users from spam, mail sent from your IP address has been blocked.\n"
      "5.7.1 Please visit\n"
      "5.7.1  https://support.google.com/mail/?p=UnsolicitedIPError to review our\n"
      "5.7.1 Bulk Email Senders Guidelines. a1si123456 - gsmtp", RF, P),
    r("gmail", Stage.RCPT, 550,
      "5.7.1 [203.0.113.5] The IP you're using to send mail is not authorized to\n"
      "5.7.1 send email directly to our servers. Please use the SMTP relay at your\n"
      "5.7.1 service provider instead. Learn more at\n"
      "5.7.1  https://support.google.com/mail/?p=NotAuthorizedError - gsmtp", RF, P),
    r("gmail", Stage.GREETING, 421,
      "4.7.0 IP not in whitelist for RCPT domain, closing connection.",
      RF, T, throttle=True, session_over=True),
    r("gmail", Stage.GREETING, 421, "4.7.0 Try again later, closing connection.",
      T, throttle=True, session_over=True),
    r("gmail", Stage.DOT, 421, "4.3.0 Temporary System Problem.  Try again later (10).",
      T, throttle=True, session_over=True),
    r("gmail", Stage.RCPT, 450,
      "4.2.1 The user you are trying to contact is receiving mail too quickly.\n"
      "4.2.1 Please resend your message at a later time. If the user is able to\n"
      "4.2.1 receive mail at that time, your message will be delivered.", T),
    r("gmail-relay", Stage.RCPT, 450,
      "4.2.1 Peak SMTP relay limit exceeded for customer. For more information on\n"
      "4.2.1 SMTP relay sending limits please contact your administrator.",
      RF, T, throttle=True),
    r("gmail", Stage.AUTH, 535,
      "5.7.8 Username and Password not accepted. Learn more at\n"
      "5.7.8  https://support.google.com/mail/?p=BadCredentials a1si123456 - gsmtp", RF),
    r("gmail", Stage.AUTH, 534,
      "5.7.9 Application-specific password required. Learn more at\n"
      "5.7.9  https://support.google.com/mail/?p=InvalidSecondFactor - gsmtp", RF),
    r("gmail", Stage.AUTH, 454,
      "4.7.0 Cannot authenticate due to temporary system problem. Try again later.", RF),
    r("gmail", Stage.MAIL, 530,
      "5.7.0 Authentication Required. Learn more at\n"
      "5.7.0  https://support.google.com/mail/?p=WantAuthError a1si123456 - gsmtp", RF),
    r("gmail", Stage.DOT, 550,
      "5.7.26 This mail has been blocked because the sender is unauthenticated.\n"
      "5.7.26 Gmail requires all senders to authenticate with either SPF or DKIM.",
      RF, P),
    r("gmail", Stage.DOT, 550,
      "5.7.25 [203.0.113.5] The IP address sending this message does not have a\n"
      "5.7.25 PTR record setup, or the corresponding forward DNS entry does not\n"
      "5.7.25 point to the sending IP. As a policy, Gmail does not accept messages\n"
      "5.7.25 from IPs with missing PTR records.", RF, P),
    r("gmail", Stage.DOT, 552,
      "5.7.0 This message was blocked because its content presents a potential\n"
      "5.7.0 security issue. Please visit\n"
      "5.7.0  https://support.google.com/mail/?p=BlockedMessage to review our\n"
      "5.7.0 message content and attachment content guidelines.", P),
    r("gmail", Stage.DOT, 550,
      "5.7.1 [203.0.113.5] Our system has detected that this message is\n"
      "5.7.1 likely unsolicited mail. To reduce the amount of spam sent to Gmail,\n"
      "5.7.1 this message has been blocked.", P),
    # Outlook.com / Microsoft 365 / Exchange
    r("outlook", Stage.RCPT, 550,
      "5.5.0 Requested action not taken: mailbox unavailable (S2017062302). "
      "[DM6NAM12FT056.eop-nam12.prod.protection.outlook.com]", P),
    r("m365", Stage.RCPT, 550,
      "5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup", P),
    r("outlook", Stage.MAIL, 550,
      "5.7.1 Unfortunately, messages from [203.0.113.5] weren't sent. Please contact your "
      "Internet service provider since part of their network is on our block list (S3140). "
      "You can also refer your provider to "
      "http://mail.live.com/mail/troubleshooting.aspx#errors. "
      "[DM6NAM12FT056.eop-nam12.prod.protection.outlook.com]", RF, P),
    r("m365", Stage.MAIL, 550,
      "5.7.606 Access denied, banned sending IP [203.0.113.5]. To request removal from this "
      "list please visit https://sender.office.com/ and follow the directions.", RF, P),
    r("outlook", Stage.DOT, 451,
      "4.7.650 The mail server [203.0.113.5] has been temporarily rate limited due to IP "
      "reputation. For e-mail delivery information, see https://postmaster.live.com (S775)",
      RF, T),
    r("outlook", Stage.MAIL, 451,
      "4.7.500 Server busy. Please try again later from [203.0.113.5]. (S77714)", T),
    r("m365", Stage.AUTH, 535, "5.7.3 Authentication unsuccessful [BN6PR1201CA0001.namprd12]",
      RF),
    r("m365", Stage.AUTH, 535,
      "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the "
      "Tenant. Visit https://aka.ms/smtp_auth_disabled for more information.", RF),
    r("m365", Stage.DOT, 550,
      "5.7.60 SMTP; Client does not have permissions to send as this sender", RF),
    r("exchange", Stage.RCPT, 550, "5.7.54 SMTP; Unable to relay recipient in non-accepted domain",
      RF),
    r("m365", Stage.RCPT, 550, "5.7.64 TenantAttribution; Relay Access Denied", RF),
    r("exchange", Stage.DOT, 552, "5.3.4 Message size exceeds fixed maximum message size", RF, P),
    r("m365", Stage.MAIL, 550,
      "5.7.708 Service unavailable. Access denied, traffic not accepted from this IP.", RF, P),
    # Yahoo / AOL
    r("yahoo", Stage.MAIL, 421,
      "4.7.0 [TSS04] Messages from 203.0.113.5 temporarily deferred due to unexpected volume "
      "or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes",
      RF, T, throttle=True, session_over=True),
    r("yahoo", Stage.MAIL, 553,
      "5.7.2 [TSS09] All messages from 203.0.113.5 will be permanently deferred; Retrying "
      "will NOT succeed. See https://postmaster.yahooinc.com/error-codes", RF, P),
    r("yahoo", Stage.RCPT, 554,
      "delivery error: dd This user doesn't have a yahoo.com account (someone@yahoo.com) [0] "
      "- mta1234.mail.gq1.yahoo.com", P),
    r("yahoo", Stage.RCPT, 552, "1 Requested mail action aborted, mailbox not found", P),
    r("yahoo", Stage.DOT, 554,
      "5.7.9 Message not accepted for policy reasons.  See "
      "https://help.yahoo.com/kb/postmaster/SLN7253.html", P),
    r("yahoo", Stage.DOT, 550,
      "5.7.9 This mail has been blocked because the sender is unauthenticated. Yahoo requires "
      "all senders to authenticate with either SPF or DKIM.", RF, P),
    # Apple iCloud
    r("icloud", Stage.RCPT, 550, "5.1.1 <someone@icloud.com>: user does not exist", P),
    r("icloud", Stage.DOT, 550,
      "5.7.1 [CS01] Message rejected due to local policy. Please visit "
      "https://support.apple.com/en-us/HT204137", P),
    r("icloud", Stage.DOT, 550,
      "5.7.1 Your email was rejected due to having a domain present in the Spamhaus DBL -- "
      "see https://www.spamhaus.org/dbl/", P),
    r("icloud", Stage.DOT, 550, "5.7.1 Your message was rejected due to example.com DMARC policy.",
      RF, P),
    r("icloud", Stage.RCPT, 421,
      "4.7.1 Messages to someone@icloud.com deferred due to excessive volume. Try again later "
      "- https://support.apple.com/en-us/HT204137", T, throttle=True, session_over=True),
    r("icloud", Stage.RCPT, 451, "4.7.1 Service unavailable - try again later", T,
      same_route=True),
    # Postfix
    r("postfix", Stage.RCPT, 550,
      "5.1.1 <nobody@example.com>: Recipient address rejected: User unknown in local "
      "recipient table", P),
    r("postfix", Stage.RCPT, 554, "5.7.1 <someone@example.org>: Relay access denied", RF),
    r("postfix", Stage.RCPT, 450,
      "4.2.0 <someone@example.org>: Recipient address rejected: Greylisted, see "
      "http://postgrey.schweikert.ch/help/example.org.html", T, same_route=True),
    r("postfix", Stage.RCPT, 554,
      "5.7.1 Service unavailable; Client host [203.0.113.5] blocked using zen.spamhaus.org; "
      "https://www.spamhaus.org/query/ip/203.0.113.5", RF, P),
    r("postfix", Stage.RCPT, 450,
      "4.7.1 Service unavailable; Client host [203.0.113.5] blocked using zen.spamhaus.org; "
      "https://www.spamhaus.org/query/ip/203.0.113.5", RF, T),
    r("postfix", Stage.DOT, 552, "5.3.4 Message size exceeds fixed limit", RF, P),
    r("postfix", Stage.MAIL, 452, "4.3.1 Insufficient system storage", T),
    r("postfix", Stage.RCPT, 450,
      "4.1.1 <someone@example.org>: Recipient address rejected: unverified address: host "
      "mx.example.org[198.51.100.7] said: 550 5.1.1 User unknown (in reply to RCPT TO "
      "command)", T),
    r("postfix", Stage.MAIL, 553,
      "5.7.1 <noreply@example.com>: Sender address rejected: not owned by user smtpuser", RF),
    r("postfix", Stage.RCPT, 501, "5.1.3 Bad recipient address syntax", P),
    r("postfix", Stage.MAIL, 503, "5.5.1 Error: nested MAIL command", RF),
    r("postfix", Stage.EHLO, 502, "5.5.2 Error: command not recognized", RF),
    r("postfix", Stage.RCPT, 452, "4.5.3 Error: too many recipients", T, split=True),
    r("postfix", Stage.STARTTLS, 454, "4.7.0 TLS not available due to local problem", RF),
    r("postfix", Stage.AUTH, 535, "5.7.8 Error: authentication failed: authentication failure",
      RF),
    r("postfix", Stage.MAIL, 530, "5.7.0 Must issue a STARTTLS command first", RF),
    r("postfix", Stage.RCPT, 556,
      "5.1.10 <someone@example.org>: Recipient address rejected: Domain example.org does "
      "not accept mail (nullMX)", P),
    r("postfix", Stage.GREETING, 554, "5.3.2 mx.example.org ESMTP not accepting messages", RF),
    # Exim
    r("exim", Stage.RCPT, 550, "Unrouteable address", P),
    r("exim", Stage.RCPT, 550, "relay not permitted", RF),
    r("exim", Stage.DOT, 552, "Message size exceeds maximum permitted", RF, P),
    r("exim", Stage.RCPT, 451, "Temporary local problem - please try later", T),
    r("exim", Stage.RCPT, 451, "4.7.1 Please try again later", T, same_route=True),
    r("exim", Stage.EHLO, 554, "SMTP synchronization error", RF),
    r("exim", Stage.DOT, 550, "Rejected: message looks like spam", P),
    # Sendmail
    r("sendmail", Stage.RCPT, 550, "5.1.1 <nobody@example.com>... User unknown", P),
    r("sendmail", Stage.RCPT, 550,
      "5.7.1 <someone@example.org>... Relaying denied. Proper authentication required.", RF),
    r("sendmail", Stage.MAIL, 553,
      "5.1.8 <noreply@nonexistent.invalid>... Domain of sender address "
      "noreply@nonexistent.invalid does not exist", RF),
    r("sendmail", Stage.RCPT, 452, "4.5.3 Too many recipients", T, split=True),
    r("sendmail", Stage.DOT, 552, "5.2.3 Message exceeds maximum fixed size (10485760)", RF, P),
    # Amazon SES
    r("ses", Stage.DOT, 250, "Ok 0100018c8d2a1b2c-3d4e5f60-7182-93a4-b5c6-d7e8f9a0b1c2-000000", D),
    r("ses", Stage.AUTH, 535, "Authentication Credentials Invalid", RF),
    r("ses", Stage.MAIL, 454, "Throttling failure: Maximum sending rate exceeded.", RF,
      throttle=True),
    r("ses", Stage.MAIL, 454, "Throttling failure: Daily message quota exceeded.", RF,
      throttle=True),
    r("ses", Stage.DOT, 554,
      "Message rejected: Email address is not verified. The following identities failed the "
      "check in region US-EAST-1: noreply@example.com", RF),
    r("ses", Stage.DOT, 451, "Temporary service failure", T),
    # SendGrid
    r("sendgrid", Stage.MAIL, 550, "Unauthenticated senders not allowed", RF),
    r("sendgrid", Stage.DOT, 550,
      "The from address does not match a verified Sender Identity. Mail cannot be sent until "
      "this error is resolved. Visit https://sendgrid.com/docs/for-sender/sender-identity/ "
      "to see the Sender Identity requirements", RF),
    r("sendgrid", Stage.MAIL, 451, "Authentication failed: Maximum credits exceeded", RF,
      throttle=True),
    r("sendgrid", Stage.AUTH, 535, "Authentication failed: Bad username / password", RF),
    # Mailgun
    r("mailgun", Stage.RCPT, 550, "5.7.1 Relaying denied", RF),
    r("mailgun", Stage.RCPT, 554,
      "Sandbox subdomains are for test purposes only. Please add your own domain or add the "
      "address to authorized recipients in Account Settings.", RF),
    # Postmark
    r("postmark", Stage.DOT, 550,
      "The 'From' address you supplied (noreply@example.com) is not a Sender Signature on "
      "your account. Please add and confirm this address in order to be able to use it in "
      "the 'From' field of your messages.", RF),
    # Blocklists and network operators
    r("barracuda", Stage.GREETING, 554,
      "Service unavailable; Client host [203.0.113.5] blocked using Barracuda Reputation; "
      "http://www.barracudanetworks.com/reputation/?r=1&ip=203.0.113.5", RF, P),
    r("spamcop", Stage.RCPT, 550,
      "5.7.1 Rejected - see https://www.spamcop.net/bl.shtml?203.0.113.5", RF, P),
    r("comcast", Stage.GREETING, 554,
      "resimta-po-01v.sys.comcast.net comcast 203.0.113.5 found on one or more DNSBLs, see "
      "http://postmaster.comcast.net/smtp-error-codes.php#BL000001", RF, P),
    r("att", Stage.MAIL, 550,
      "5.7.1 Connections not accepted from servers without a valid sender domain.flph829 "
      "Fix reverse DNS for 203.0.113.5", RF, P),
    r("rackspace", Stage.RCPT, 450, "4.7.1 Client host 203.0.113.5 has no PTR record (G1F)",
      RF, T),
    r("rackspace", Stage.GREETING, 421, "Too many concurrent connections from this client (G2)",
      T, throttle=True, session_over=True),
]
# fmt: on


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


@pytest.mark.parametrize(
    ("code", "text", "outcome"),
    [
        (550, "4.2.2 mailbox full, try later", T),
        (450, "5.1.1 user unknown", P),
        (
            554,
            "4.7.1 Service unavailable; Client host [203.0.113.5] blocked using zen.spamhaus.org",
            RF,
        ),
    ],
)
def test_enhanced_class_wins_over_basic_code(code, text, outcome):
    verdict = classify(Stage.RCPT, code, text)
    assert verdict.outcome is outcome
    if outcome is RF:
        assert verdict.final_outcome(other_route_left=False) is T


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


def test_a_temporary_enhanced_code_after_the_dot_stays_transient_on_the_last_route():
    verdict = classify(Stage.DOT, 500, "4.3.0 Line too long, try later")
    assert verdict.final_outcome(other_route_left=False) is T


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
