"""ESP webhook bodies in the shapes their documentation shows (values our own).

Each builder returns ``(body bytes, content type, extra headers)`` for the
test client, so a test posts exactly what the ESP would.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from typing import Any

Post = tuple[bytes, str, dict[str, str]]


def _json(data: Any, headers: dict[str, str] | None = None) -> Post:
    return json.dumps(data).encode(), "application/json", headers or {}


# Postmark: one JSON object per event, RecordType names it.
def postmark_delivery(message_id: str, recipient: str, **extra: Any) -> Post:
    return _json(
        {
            "RecordType": "Delivery",
            "ServerID": 2301,
            "MessageStream": "outbound",
            "MessageID": message_id,
            "Recipient": recipient,
            "Tag": "receipts",
            "DeliveredAt": "2026-11-30T10:15:02.5Z",
            "Details": "smtp;250 2.0.0 OK 1701339302 mx.example.net",
            "Metadata": {},
            **extra,
        }
    )


def postmark_bounce(
    message_id: str,
    recipient: str,
    *,
    type_: str = "HardBounce",
    bounce_id: int = 7001,
    **extra: Any,
) -> Post:
    return _json(
        {
            "RecordType": "Bounce",
            "ID": bounce_id,
            "Type": type_,
            "TypeCode": 1 if type_ == "HardBounce" else 4096,
            "Name": "Hard bounce" if type_ == "HardBounce" else "Soft bounce",
            "Tag": "",
            "MessageID": message_id,
            "Metadata": {},
            "ServerID": 2301,
            "MessageStream": "outbound",
            "Description": "The server was unable to deliver your message (unknown user).",
            "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist",
            "Email": recipient,
            "From": "shop@example.com",
            "BouncedAt": "2026-11-30T10:16:40.1Z",
            "DumpAvailable": False,
            "Inactive": type_ == "HardBounce",
            "CanActivate": True,
            "Subject": "Your receipt",
            **extra,
        }
    )


def postmark_complaint(message_id: str, recipient: str) -> Post:
    body, _ctype, _headers = postmark_bounce(message_id, recipient, type_="SpamComplaint")
    data = json.loads(body)
    data.update(RecordType="SpamComplaint", ID=7002, Details="", Description="Marked as spam")
    return _json(data)


# Amazon SES: an SNS notification whose Message is the SES event as a JSON string.
def ses_notification(ses_event: dict[str, Any], sns_id: str | None = None) -> Post:
    sns_id = sns_id or str(uuid.uuid4())
    envelope = {
        "Type": "Notification",
        "MessageId": sns_id,
        "TopicArn": "arn:aws:sns:eu-west-1:111122223333:ses-events",
        "Subject": "Amazon SES Email Event Notification",
        "Message": json.dumps(ses_event),
        "Timestamp": "2026-11-30T10:20:00.000Z",
        "SignatureVersion": "1",
        "Signature": "c2lnbmF0dXJl",
        "SigningCertURL": "https://sns.eu-west-1.amazonaws.com/cert.pem",
        "UnsubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe",
    }
    return _json(
        envelope,
        {
            "HTTP_X_AMZ_SNS_MESSAGE_TYPE": "Notification",
            "HTTP_X_AMZ_SNS_MESSAGE_ID": sns_id,
            "HTTP_X_AMZ_SNS_TOPIC_ARN": envelope["TopicArn"],
        },
    )


def _ses_mail(message_id: str, recipients: list[str]) -> dict[str, Any]:
    return {
        "timestamp": "2026-11-30T10:19:58.000Z",
        "source": "shop@example.com",
        "messageId": message_id,
        "destination": recipients,
        "headersTruncated": False,
        "headers": [{"name": "Subject", "value": "Your receipt"}],
    }


def ses_bounce(
    message_id: str,
    recipients: list[str],
    *,
    bounce_type: str = "Permanent",
    sns_id: str | None = None,
) -> Post:
    return ses_notification(
        {
            "eventType": "Bounce",
            "bounce": {
                "bounceType": bounce_type,
                "bounceSubType": "General",
                "bouncedRecipients": [
                    {
                        "emailAddress": r,
                        "action": "failed",
                        "status": "5.1.1" if bounce_type == "Permanent" else "4.2.2",
                        "diagnosticCode": "smtp; 550 5.1.1 user unknown"
                        if bounce_type == "Permanent"
                        else "smtp; 452 4.2.2 mailbox full",
                    }
                    for r in recipients
                ],
                "timestamp": "2026-11-30T10:19:59.000Z",
                "feedbackId": "0102018c-feedback-000000",
                "reportingMTA": "dsn; a1-2.smtp-out.eu-west-1.amazonses.com",
            },
            "mail": _ses_mail(message_id, recipients),
        },
        sns_id,
    )


def ses_delivery(message_id: str, recipients: list[str]) -> Post:
    return ses_notification(
        {
            "eventType": "Delivery",
            "delivery": {
                "timestamp": "2026-11-30T10:20:01.000Z",
                "processingTimeMillis": 812,
                "recipients": recipients,
                "smtpResponse": "250 2.6.0 Message received",
                "reportingMTA": "a1-2.smtp-out.eu-west-1.amazonses.com",
            },
            "mail": _ses_mail(message_id, recipients),
        }
    )


def ses_complaint(message_id: str, recipients: list[str]) -> Post:
    return ses_notification(
        {
            "eventType": "Complaint",
            "complaint": {
                "complainedRecipients": [{"emailAddress": r} for r in recipients],
                "timestamp": "2026-11-30T11:00:00.000Z",
                "feedbackId": "0102018c-complaint-000000",
                "complaintFeedbackType": "abuse",
                "userAgent": "ExampleMail FBL",
            },
            "mail": _ses_mail(message_id, recipients),
        }
    )


# Mailgun: JSON with a signature block (HMAC-SHA256 of timestamp + token).
def mailgun_event(
    signing_key: str,
    event: str,
    message_id: str,
    recipient: str,
    *,
    token: str | None = None,
    severity: str = "permanent",
    code: int = 550,
    message: str = "5.1.1 The email account that you tried to reach does not exist",
    user_variables: dict[str, str] | None = None,
) -> Post:
    token = token or uuid.uuid4().hex
    timestamp = "1764497000"
    signature = hmac.new(
        signing_key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256
    ).hexdigest()
    data: dict[str, Any] = {
        "event": event,
        "id": uuid.uuid4().hex[:22],
        "timestamp": 1764497000.123,
        "recipient": recipient,
        "message": {"headers": {"message-id": message_id, "to": recipient, "subject": "Hi"}},
        "user-variables": user_variables or {},
        "tags": [],
        "delivery-status": {"code": code, "message": message, "description": ""},
    }
    if event == "failed":
        data["severity"] = severity
        data["reason"] = "bounce" if severity == "permanent" else "generic"
    return _json(
        {
            "signature": {"timestamp": timestamp, "token": token, "signature": signature},
            "event-data": data,
        }
    )


# SendGrid: a JSON array of events.
def sendgrid_events(*events: dict[str, Any]) -> Post:
    return _json(list(events))


def sendgrid_event(event: str, smtp_id: str, recipient: str, **extra: Any) -> dict[str, Any]:
    data = {
        "email": recipient,
        "timestamp": 1764497100,
        "smtp-id": smtp_id,
        "event": event,
        "category": ["receipts"],
        "sg_event_id": extra.pop("sg_event_id", uuid.uuid4().hex),
        "sg_message_id": "8WBU5yLSRyKOxU1QUE8OIA.filterdrecv-5645d9c87f-abcde-1-0",
    }
    if event == "bounce":
        data.update(reason="550 5.1.1 unknown recipient", status="5.1.1", type="bounce")
    if event == "delivered":
        data["response"] = "250 2.0.0 OK"
    data.update(extra)
    return data
