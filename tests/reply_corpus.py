"""Real SMTP replies and the outcome each must get, with where each came from.

Every row names its provider; :data:`SOURCES` names, for each provider, the
public page (postmaster or bounce documentation, an ESP's SMTP reference, an
MTA's manual, or a public bounce log) where the reply is shown as written.
IPs are the documentation range (203.0.113.0/24); addresses are example.*;
ids and host names inside replies are kept as the sources show them.
"""

from __future__ import annotations

import pytest

from django_smtprelay.replies import Outcome, Stage, parse_enhanced

D, T, P, RF, U = (
    Outcome.DELIVERED,
    Outcome.TRANSIENT,
    Outcome.PERMANENT,
    Outcome.ROUTE_FAULT,
    Outcome.UNCERTAIN,
)
FLAGS = ("throttle", "split", "session_over", "same_route", "capped")

SOURCES = {
    "gmail": "https://support.google.com/a/answer/3726730 (Gmail SMTP errors and codes)",
    "gmail-relay": "https://support.google.com/a/answer/3726730 and "
    "https://support.google.com/a/answer/6140680 (Workspace SMTP relay)",
    "outlook": "https://sendersupport.olc.protection.outlook.com/pm/ (Outlook.com postmaster)",
    "m365": "https://learn.microsoft.com/en-us/exchange/mail-flow-best-practices/"
    "non-delivery-reports-in-exchange-online/non-delivery-reports-in-exchange-online",
    "exchange": "https://learn.microsoft.com/en-us/exchange/mail-flow/non-delivery-reports-and-"
    "bounce-messages/non-delivery-reports-and-bounce-messages; "
    "https://campus.barracuda.com/product/essentials/doc/169287426/email-cache-policies; "
    "https://headwayapp.co/mxroute-changelog/adjustments-to-outbound-rejections-137432",
    "yahoo": "https://senders.yahooinc.com/smtp-error-codes/ (Yahoo Sender Hub)",
    "icloud": "https://support.apple.com/en-us/102322 (iCloud Mail postmaster information)",
    "proofpoint": "https://ipcheck.proofpoint.com/; bounce quoted at "
    "https://www.suped.com/knowledge/email-deliverability/troubleshooting/"
    "how-quickly-does-proofpoint-provide-delisting-details-and-advice",
    "mimecast": "https://community.mimecast.com/s/article/Mimecast-SMTP-Error-Codes-842605754; "
    "bounce log at https://wordtothewise.com/2018/07/who-are-mimecast",
    "cisco": "Cisco Secure Email (AsyncOS) default HAT replies; bounce log at "
    "https://portal.smartertools.com/kb/a3500/554-error-mta-poor-reputation-fixes.aspx",
    "barracuda": "https://campus.barracuda.com/product/emailsecuritygateway/article/BSF/"
    "SMTPErrorCodes/; https://luxsci.com/blog/?p=16857; "
    "https://hardwaresecrets.com/understanding-email-bounce-messages/4/",
    "spamcop": "https://www.spamcop.net/bl.shtml",
    "comcast": "http://postmaster.comcast.net/smtp-error-codes.php",
    "att": "AT&T postmaster rejection as quoted in public bounce logs (abuse_rbl@abuse-att.net)",
    "rackspace": "Rackspace Email bounce codes (G1F, G2) in public bounce logs",
    "qq": "https://smtp.codes/qq; http://service.mail.qq.com/cgi-bin/help?subtype=1&&id=20022",
    "postfix": "http://www.postfix.org/postconf.5.html, SMTPD_ACCESS_README, "
    "POSTSCREEN_README and policyd-spf (python-policyd-spf) replies",
    "exim": "https://www.exim.org/exim-html-current/doc/html/spec_html/ch-access_control_lists.html",
    "sendmail": "sendmail 8 replies (cf/README: FEATURE(dnsbl), access_db, check_relay)",
    "ses": "https://docs.aws.amazon.com/ses/latest/dg/troubleshoot-smtp.html and "
    "https://docs.aws.amazon.com/ses/latest/dg/troubleshoot-error-messages.html",
    "sendgrid": "https://sendgrid.com/docs/for-developers/sending-email/"
    "smtp-errors-and-troubleshooting/",
    "mailgun": "https://help.mailgun.com/hc/en-us (sending limitation, disabled domain); "
    "https://smtptester.org/guides/mailgun-smtp-test/",
    "postmark": "https://postmarkapp.com/support/article/common-smtp-connection-errors",
    "brevo": "https://help.brevo.com/hc/en-us (authorized IPs, account activation); "
    "https://smtptester.org/guides/brevo-smtp-test/",
    "unisender-go": "https://client.cloud4u.com/index.php/knowledgebase/1041/"
    "Restrictions-on-the-Service-to-prevent-spam.html (smtp.msndr.net)",
    "zoho": "https://www.zoho.com/mail/help/ (outgoing blocked for the account)",
    "emailit": "https://emailit.com/docs/smtp/troubleshooting/",
    "oracle": "https://docs.oracle.com/en-us/iaas/Content/Email/Concepts/troubleshooting.htm",
    "socketlabs": "https://help.socketlabs.com/docs/"
    "421-451-too-many-errors-you-have-been-temporarily-blacklisted",
}


def r(provider, stage, code, text, outcome, last=None, **flags):
    """One row: ``last`` is the outcome when no other route is left."""
    assert set(flags) <= set(FLAGS), flags
    assert provider in SOURCES, f"name the source of {provider!r} replies in SOURCES"
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
      RF, P),
    r("m365", Stage.RCPT, 550, "5.7.64 TenantAttribution; Relay Access Denied", RF, P),
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
    r("postfix", Stage.RCPT, 554, "5.7.1 <someone@example.org>: Relay access denied", RF, P),
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
    r("exim", Stage.RCPT, 550, "relay not permitted", RF, P),
    r("exim", Stage.DOT, 552, "Message size exceeds maximum permitted", RF, P),
    r("exim", Stage.RCPT, 451, "Temporary local problem - please try later", T),
    r("exim", Stage.RCPT, 451, "4.7.1 Please try again later", T, same_route=True),
    r("exim", Stage.EHLO, 554, "SMTP synchronization error", RF),
    r("exim", Stage.DOT, 550, "Rejected: message looks like spam", P),
    # Sendmail
    r("sendmail", Stage.RCPT, 550, "5.1.1 <nobody@example.com>... User unknown", P),
    r("sendmail", Stage.RCPT, 550,
      "5.7.1 <someone@example.org>... Relaying denied. Proper authentication required.", RF, P),
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
    r("mailgun", Stage.RCPT, 550, "5.7.1 Relaying denied", RF, P),
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
    # -- Added with their sources (SOURCES below) --------------------------------
    # Gmail / Google Workspace
    r("gmail", Stage.MAIL, 550,
      "5.4.5 Daily user sending limit exceeded. For more information on Gmail sending\n"
      "5.4.5 limits go to https://support.google.com/a/answer/166852 - gsmtp",
      RF, T, throttle=True),
    r("gmail-relay", Stage.RCPT, 550,
      "5.7.0 Mail relay denied [203.0.113.5]. Invalid credentials for relay for one of the\n"
      "5.7.0 domains in: example.com (as obtained from HELO and MAIL FROM). Email is being\n"
      "5.7.0 sent from a domain or IP address which isn't registered in your Workspace\n"
      "5.7.0 account. Please login to your Workspace account and verify that your sending\n"
      "5.7.0 device IP address has been registered within the Workspace SMTP Relay Settings.",
      RF, P),
    r("gmail-relay", Stage.MAIL, 550,
      "5.7.0 Mail Sending denied. This error occurs if the sender account is disabled or not\n"
      "5.7.0 registered within your Google Workspace domain.", RF),
    r("gmail", Stage.DOT, 550,
      "5.7.1 This message does not have authentication information or fails to pass\n"
      "5.7.1 authentication checks (SPF or DKIM). To best protect our users from spam, the\n"
      "5.7.1 message has been blocked.", RF, P),
    r("gmail", Stage.DOT, 550,
      "5.7.26 Unauthenticated email from example.com is not accepted due to domain's\n"
      "5.7.26 DMARC policy. Please contact the administrator of example.com domain if\n"
      "5.7.26 this was a legitimate mail.", RF, P),
    r("gmail", Stage.RCPT, 550,
      "5.7.1 The user or domain that you are sending to (or from) has a policy that\n"
      "5.7.1 prohibited the mail that you sent. Please contact your domain\n"
      "5.7.1 administrator for further details.", P),
    r("gmail", Stage.DOT, 550,
      "5.7.1 Messages missing a valid address in From: header, or having no From: header,\n"
      "5.7.1 are not accepted.", P),
    r("gmail", Stage.RCPT, 553,
      "5.1.2 We weren't able to find the recipient domain. Please check for any\n"
      "5.1.2 spelling errors, and make sure you didn't enter any spaces, periods,\n"
      "5.1.2 or other punctuation after the recipient's email address.", P),
    r("gmail", Stage.DOT, 552,
      "5.7.0 Our system detected an illegal attachment on your message. Please\n"
      "5.7.0 visit http://mail.google.com/support/bin/answer.py?answer=6590 to\n"
      "5.7.0 review our attachment guidelines.", P),
    r("gmail", Stage.DOT, 550,
      "5.7.1 Our system has detected that this message is not RFC 5322\n"
      "5.7.1 compliant:\n"
      "5.7.1 'From' header is missing.", P),
    r("gmail", Stage.RCPT, 451, "4.3.0 Mail server temporarily rejected message.", T),
    r("gmail", Stage.EHLO, 502, "5.5.1 Unrecognized command.", RF),
    r("gmail", Stage.AUTH, 454, "4.7.0 Too many login attempts, please try again later.", RF),
    # Microsoft 365 / Outlook.com / Exchange
    r("m365", Stage.MAIL, 550,
      "5.7.511 Access denied, banned sender[203.0.113.5]. To request removal from this list "
      "please forward this message to delist@microsoft.com. For more information please go to "
      "https://go.microsoft.com/fwLink/?LinkID=526655 AS(1430)", RF, P),
    r("m365", Stage.RCPT, 550,
      "5.4.1 Recipient address rejected: Access denied. AS(201806281) "
      "[DM6NAM12FT056.eop-nam12.prod.protection.outlook.com]", P),
    r("m365", Stage.MAIL, 550,
      "5.7.750 Service unavailable. Client blocked from sending from unregistered domains. "
      "For more information please go to https://go.microsoft.com/fwlink/?LinkId=526653",
      RF, P),
    r("m365", Stage.DOT, 554,
      "5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to "
      "process message due to a permanent exception with message Cannot submit message.",
      RF, T, throttle=True),
    r("m365", Stage.AUTH, 535,
      "5.7.139 Authentication unsuccessful, the user credentials were incorrect.", RF),
    r("m365", Stage.AUTH, 535,
      "5.7.139 Authentication unsuccessful, user is locked by your organization's security "
      "defaults policy. Contact your administrator.", RF),
    r("m365", Stage.MAIL, 530,
      "5.7.57 SMTP; Client was not authenticated to send anonymous mail during MAIL FROM", RF),
    r("m365", Stage.DOT, 550,
      "5.2.252 SendAsDenied; noreply@example.com not allowed to send as someone@example.org; "
      "STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied", RF),
    r("m365", Stage.GREETING, 421,
      "4.3.2 The maximum number of concurrent server connections has exceeded a limit, "
      "closing transmission channel", T, throttle=True, session_over=True),
    r("m365", Stage.RCPT, 550,
      "5.7.133 RESOLVER.RST.SenderNotAuthenticatedForGroup; authentication required; "
      "Delivery restriction check failed as sender not authenticated", P),
    r("exchange", Stage.RCPT, 550, "5.1.1 RESOLVER.ADR.ExRecipNotFound; not found", P),
    r("exchange", Stage.MAIL, 530, "5.7.1 Client was not authenticated", RF),
    r("exchange", Stage.RCPT, 550, "5.7.1 Unable to relay", RF, P),
    r("exchange", Stage.RCPT, 550,
      "5.7.1 Your access to submit messages to this e-mail system has been rejected.", RF, P),
    # Yahoo / AOL
    r("yahoo", Stage.GREETING, 421,
      "4.7.0 [TS03] All messages from 203.0.113.5 will be permanently deferred; Retrying will "
      "NOT succeed. See https://senders.yahooinc.com/error-codes",
      RF, T, throttle=True, session_over=True),
    r("yahoo", Stage.MAIL, 421,
      "4.7.0 [TS01] Messages from 203.0.113.5 temporarily deferred due to user complaints - "
      "4.16.55.1; see https://senders.yahooinc.com/error-codes",
      RF, T, throttle=True, session_over=True),
    r("yahoo", Stage.GREETING, 553,
      "5.7.1 [BL21] Connections will not be accepted from 203.0.113.5, because the ip is in "
      "Spamhaus's list; see https://senders.yahooinc.com/error-codes", RF, P),
    r("yahoo", Stage.RCPT, 554,
      "30 Sorry, your message to someone@yahoo.com cannot be delivered. This mailbox is "
      "disabled (554.30).", P),
    r("yahoo", Stage.RCPT, 554,
      "delivery error: dd Not a valid recipient - atlas123.free.mail.ne1.yahoo.com", P),
    r("yahoo", Stage.RCPT, 451,
      "Message temporarily deferred due to unresolvable RFC.5321 from domain; see "
      "https://senders.yahooinc.com/error-codes", T),
    # Apple iCloud (and Proofpoint in front of it)
    r("icloud", Stage.DOT, 554,
      "5.7.1 [HM08] Message rejected due to local policy. Please visit "
      "https://support.apple.com/en-us/HT204137", P),
    r("icloud", Stage.RCPT, 550,
      "5.7.1 Mail from IP 203.0.113.5 was rejected due to listing in Spamhaus SBL. For details "
      "please see http://www.spamhaus.org/query/bl?ip=203.0.113.5", RF, P),
    r("icloud", Stage.RCPT, 550, "5.1.1 unknown or illegal alias: someone@icloud.com", P),
    r("proofpoint", Stage.RCPT, 554,
      "5.7.0 Blocked - see https://support.proofpoint.com/dnsbl-lookup.cgi?ip=203.0.113.5",
      RF, P),
    r("proofpoint", Stage.RCPT, 554, "Blocked - see https://ipcheck.proofpoint.com/?ip=203.0.113.5",
      RF, P),
    # Mimecast
    r("mimecast", Stage.RCPT, 550,
      "Invalid Recipient - https://community.mimecast.com/docs/DOC-1369#550", P),
    r("mimecast", Stage.RCPT, 550,
      "Administrative prohibition - envelope blocked - "
      "https://community.mimecast.com/docs/DOC-1369#550", P),
    r("mimecast", Stage.DOT, 554,
      "Email rejected due to security policies - https://community.mimecast.com/docs/DOC-1369#554",
      P),
    r("mimecast", Stage.RCPT, 550,
      "Envelope blocked - User Entry - https://community.mimecast.com/docs/DOC-1369#550", P),
    r("mimecast", Stage.RCPT, 451,
      "Internal resource temporarily unavailable - "
      "https://community.mimecast.com/docs/DOC-1369#451", T),
    r("mimecast", Stage.RCPT, 451,
      "Open relay not allowed - https://community.mimecast.com/docs/DOC-1369#451", RF, T),
    r("mimecast", Stage.RCPT, 550,
      "spamcop.mimecast.org Blocked - see http://www.spamcop.net/bl.shtml?203.0.113.5. - "
      "https://community.mimecast.com/docs/DOC-1369#550", RF, P),
    r("mimecast", Stage.DOT, 550,
      "Rejected by header based Blocked Senders: noreply@example.com - "
      "https://community.mimecast.com/docs/DOC-1369#550", P),
    r("mimecast", Stage.GREETING, 421, "Unable to process connection at this time",
      T, throttle=True, session_over=True),
    r("mimecast", Stage.RCPT, 550,
      "Local CT IP Reputation - (reject) - https://community.mimecast.com/docs/DOC-1369#550",
      RF, P),
    # Cisco Secure Email (IronPort)
    r("cisco", Stage.GREETING, 554,
      "Your access to this mail system has been rejected due to the sending MTA's poor "
      "reputation. If you believe that this failure is in error, please contact the intended "
      "recipient via alternate means.", RF, P),
    r("cisco", Stage.RCPT, 452, "Too many recipients received this hour", RF, T, throttle=True),
    # Barracuda
    r("barracuda", Stage.RCPT, 550,
      "permanent failure for one or more recipients (someone@example.org:blocked)", P),
    r("barracuda", Stage.DOT, 554,
      "Service unavailable; Client host [203.0.113.5] blocked using Barracuda Reputation; "
      "http://bbl.barracudacentral.com/q.cgi?ip=203.0.113.5", RF, P),
    r("barracuda", Stage.GREETING, 554,
      "Service unavailable; Client host [203.0.113.5] blocked using b.barracudacentral.org; "
      "https://www.barracudanetworks.com/reputation/?pr=1&ip=203.0.113.5", RF, P),
    # QQ Mail / Tencent Exmail: rate limits sent as 550
    r("qq", Stage.MAIL, 550,
      "Connection frequency limited. "
      "http://service.mail.qq.com/cgi-bin/help?subtype=1&&id=20022&&no=1000722",
      RF, T, throttle=True),
    r("qq", Stage.MAIL, 550,
      "Ip frequency limited. http://service.mail.qq.com/cgi-bin/help?subtype=1&&id=20022&&no=1000725",
      RF, T, throttle=True),
    r("qq", Stage.DOT, 550,
      "Sender frequency limited. "
      "http://service.exmail.qq.com/cgi-bin/help?subtype=1&&id=20022&&no=1000723",
      RF, T, throttle=True),
    r("qq", Stage.MAIL, 550, "Domain frequency limited", RF, T, throttle=True),
    r("qq", Stage.RCPT, 550,
      "Mailbox not found. http://service.exmail.qq.com/cgi-bin/help?subtype=1&&id=20022&&no=1000728",
      P),
    r("qq", Stage.DOT, 550,
      "Mail content denied. "
      "http://service.exmail.qq.com/cgi-bin/help?subtype=1&&id=20022&&no=1000726", P),
    r("qq", Stage.RCPT, 501,
      "Bad address syntax. http://service.exmail.qq.com/cgi-bin/help?subtype=1&&id=20022&&no=1000730",
      P),
    r("qq", Stage.DOT, 550,
      "DMARC check failed http://service.mail.qq.com/cgi-bin/help?subtype=1&&no=1001508&&id=16.",
      RF, P),
    # Postfix (smtpd restrictions, postscreen/anvil, policyd-spf)
    r("postfix", Stage.RCPT, 450, "4.7.1 Client host rejected: cannot find your hostname, "
      "[203.0.113.5]", RF, T),
    r("postfix", Stage.RCPT, 550, "5.7.1 Client host rejected: cannot find your reverse "
      "hostname, [203.0.113.5]", RF, P),
    r("postfix", Stage.RCPT, 554, "5.7.1 <unknown[203.0.113.5]>: Client host rejected: Access "
      "denied", RF, P),
    r("postfix", Stage.RCPT, 450, "4.7.1 <mail.example.com>: Helo command rejected: Host not "
      "found", RF, T),
    r("postfix", Stage.RCPT, 504, "5.5.2 <localhost>: Helo command rejected: need "
      "fully-qualified hostname", RF, P),
    r("postfix", Stage.RCPT, 554,
      "5.7.1 <someone@example.org>: Recipient address rejected: Access denied", P),
    r("postfix", Stage.GREETING, 421, "4.7.0 mx.example.org Error: too many connections from "
      "203.0.113.5", T, throttle=True, session_over=True),
    r("postfix", Stage.RCPT, 550,
      "5.7.1 <someone@example.org>: Recipient address rejected: Message rejected due to: SPF "
      "fail - not authorized. Please see http://www.openspf.net/Why?s=mfrom;"
      "id=noreply@example.com;ip=203.0.113.5;r=<UNKNOWN>", RF, P),
    r("postfix", Stage.RCPT, 554,
      "5.7.1 Service unavailable; Client host [203.0.113.5] blocked using bl.spamcop.net; "
      "Blocked - see https://www.spamcop.net/bl.shtml?203.0.113.5", RF, P),
    r("postfix", Stage.RCPT, 550, "5.1.1 <nobody@example.com>: Recipient address rejected: User "
      "unknown in virtual mailbox table", P),
    r("postfix", Stage.RCPT, 451, "4.3.5 Server configuration problem", T),
    r("postfix", Stage.MAIL, 553, "5.1.8 <noreply@example.com>: Sender address rejected: Domain "
      "not found", RF),
    r("postfix", Stage.RCPT, 450, "4.1.8 <noreply@example.com>: Sender address rejected: Domain "
      "not found", T),
    r("postfix", Stage.RCPT, 454, "4.7.1 <someone@example.org>: Relay access denied", RF, T),
    # Exim
    r("exim", Stage.RCPT, 550,
      "rejected because 203.0.113.5 is in a black list at zen.spamhaus.org", RF, P),
    r("exim", Stage.RCPT, 550, "Administrative prohibition", P),
    r("exim", Stage.RCPT, 451, "Could not complete sender verify", T),
    r("exim", Stage.RCPT, 550, "Unknown user", P),
    # Sendmail
    r("sendmail", Stage.RCPT, 550, "5.7.1 Rejected: 203.0.113.5 listed at zen.spamhaus.org",
      RF, P),
    r("sendmail", Stage.RCPT, 450,
      "4.7.1 <someone@example.org>... Relaying temporarily denied. Cannot resolve PTR record "
      "for 203.0.113.5", RF, T),
    r("sendmail", Stage.MAIL, 451,
      "4.1.8 Domain of sender address noreply@example.com does not resolve", T),
    r("sendmail", Stage.MAIL, 550, "5.7.1 <noreply@example.com>... Access denied", RF),
    # Amazon SES SMTP endpoint
    r("ses", Stage.GREETING, 421, "Too many concurrent SMTP connections",
      T, throttle=True, session_over=True),
    r("ses", Stage.DOT, 451, "Timeout waiting for data from client", T),
    r("ses", Stage.AUTH, 454, "Temporary authentication failure", RF),
    r("ses", Stage.MAIL, 530, "Authentication required", RF),
    r("ses", Stage.DOT, 554,
      "Access denied: User arn:aws:iam::123456789012:user/ses-smtp-user.20240101-120000 is not "
      "authorized to perform `ses:SendRawEmail' on resource "
      "`arn:aws:ses:us-east-1:123456789012:identity/example.com'", RF),
    r("ses", Stage.DOT, 554,
      "Message rejected: Sending paused for this account. For more information, please check "
      "the inbox of the email address associated with your AWS account.", RF),
    r("ses", Stage.DOT, 554, "Transaction failed: Duplicate header 'Subject'.", P),
    r("ses", Stage.DOT, 554,
      "Transaction failed: Configuration Set does not exist: Configuration set <transactional> "
      "does not exist.", RF),
    # SendGrid SMTP endpoint
    r("sendgrid", Stage.MAIL, 403, "You are not authorized to send from that email address", RF),
    r("sendgrid", Stage.RCPT, 421, "Message from (203.0.113.5) temporarily deferred",
      T, throttle=True, session_over=True),
    r("sendgrid", Stage.GREETING, 450,
      "too frequent connects from 203.0.113.5, please try again later.", RF, T, throttle=True),
    r("sendgrid", Stage.AUTH, 535,
      "Authentication failed: The provided authorization grant is invalid, expired, or revoked",
      RF),
    # Mailgun SMTP endpoint
    r("mailgun", Stage.MAIL, 550, "The domain is not allowed to send: Account Terminated.", RF),
    r("mailgun", Stage.AUTH, 535, "5.7.0 Mailgun is not loving your login or password", RF),
    r("mailgun", Stage.DOT, 250, "Great success", D),
    # Brevo SMTP relay
    r("brevo", Stage.AUTH, 525, "5.7.1 Unauthorized IP address", RF),
    r("brevo", Stage.MAIL, 502,
      "5.7.0 Your SMTP account is not yet activated. Please contact us at "
      "contact@sendinblue.com to request activation.", RF),
    r("brevo", Stage.AUTH, 535, "5.7.8 Authentication failed", RF),
    # Other ESP and mailbox-provider SMTP endpoints
    r("unisender-go", Stage.MAIL, 550, "Too many messages. Try again in 92 seconds.",
      RF, T, throttle=True),
    r("zoho", Stage.MAIL, 554, "5.1.8 Email Outgoing Blocked.", RF),
    r("emailit", Stage.MAIL, 452, "4.4.5 Messages per second limit exceeded",
      RF, T, throttle=True),
    r("emailit", Stage.MAIL, 452, "4.5.3 Daily message limit exceeded", RF, T, throttle=True),
    r("oracle", Stage.GREETING, 421, "Too many connections, try again later",
      T, throttle=True, session_over=True),
    r("oracle", Stage.AUTH, 421, "Too many auth failures, try again later",
      T, throttle=True, session_over=True),
    r("oracle", Stage.GREETING, 421,
      "4.4.0 Problem attempting to execute commands. Please try again later",
      T, throttle=True, session_over=True),
    r("socketlabs", Stage.GREETING, 421,
      "4.5.1 Too many errors, you have been temporarily blacklisted",
      RF, T, throttle=True, session_over=True),
]
# fmt: on
