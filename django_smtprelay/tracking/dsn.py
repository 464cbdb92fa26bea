"""A bounce that came back as mail: an RFC 3464 delivery status notification.

The report's ``message/delivery-status`` part names each recipient
(Final-Recipient), what happened (Action: failed, delayed, delivered) with
the Status (``5.1.1``) and the Diagnostic-Code (the remote server's reply);
its returned headers (``text/rfc822-headers`` or the ``message/rfc822``
copy) carry the original Message-ID and our ``X-SMTPRelay-ID``, by which the
message is found.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from email.message import Message as EmailMessage
from email.parser import HeaderParser

from ..models import Message, RecipientEvent
from . import apply as applying
from .ids import HEADER, parse_smtprelay_id

logger = logging.getLogger("django_smtprelay.tracking")

# Bounds on untrusted mail: parts looked at, recipients applied.
MAX_PARTS = 50
MAX_RECIPIENTS = 100

_ACTIONS = {
    "failed": RecipientEvent.Kind.BOUNCED,
    "delayed": RecipientEvent.Kind.DEFERRED,
    "delivered": RecipientEvent.Kind.DELIVERED,
    "relayed": RecipientEvent.Kind.DELIVERED,
    "expanded": RecipientEvent.Kind.DELIVERED,
}


@dataclass
class RecipientStatus:
    address: str
    action: str
    status: str = ""
    diagnostic: str = ""


@dataclass
class DeliveryReport:
    original_message_id: str = ""
    smtprelay_id: str = ""
    report_id: str = ""  # the DSN's own Message-ID
    recipients: list[RecipientStatus] = field(default_factory=list)


def parse(message: EmailMessage) -> DeliveryReport | None:
    """The delivery report in ``message``, or None if it is not a DSN."""
    status_part = None
    headers: EmailMessage | None = None
    for count, part in enumerate(message.walk()):
        if count >= MAX_PARTS:
            break
        ctype = part.get_content_type()
        if ctype == "message/delivery-status" and status_part is None:
            status_part = part
        elif ctype == "text/rfc822-headers" and headers is None:
            payload = part.get_payload(decode=True) or b""
            headers = HeaderParser().parsestr(payload.decode("utf-8", "replace")[:65536])
        elif ctype == "message/rfc822" and headers is None:
            inner = part.get_payload()
            if isinstance(inner, list) and inner:
                headers = inner[0]
    if status_part is None:
        return None
    report = DeliveryReport(report_id=str(message.get("Message-ID", "")).strip())
    if headers is not None:
        report.original_message_id = str(headers.get("Message-ID", "")).strip()
        report.smtprelay_id = str(headers.get(HEADER, "")).strip()
    blocks = status_part.get_payload()
    if not isinstance(blocks, list):
        return report
    for block in blocks[1 : MAX_RECIPIENTS + 1]:  # the first block is per message
        final = str(block.get("Final-Recipient", "") or block.get("Original-Recipient", ""))
        address = final.partition(";")[2].strip() if ";" in final else final.strip()
        if not address:
            continue
        diagnostic = " ".join(str(block.get("Diagnostic-Code", "")).split())
        if diagnostic.lower().startswith("smtp;"):
            diagnostic = diagnostic[5:].strip()
        report.recipients.append(
            RecipientStatus(
                address=address.strip("<>"),
                action=str(block.get("Action", "")).strip().lower(),
                status=str(block.get("Status", "")).strip(),
                diagnostic=diagnostic[:2000],
            )
        )
    return report


def apply_report(
    report: DeliveryReport, *, esp: str = "", route_pk: int | None = None
) -> list[str]:
    """Apply each recipient's status; the outcome per recipient (see :func:`apply.apply`)."""
    ours = parse_smtprelay_id(report.smtprelay_id)
    message_pk = ours[0] if ours else None
    if message_pk is None and report.original_message_id:
        forms = applying._id_forms(report.original_message_id)
        message_pk = (
            Message.objects.filter(message_id__in=forms).values_list("pk", flat=True).first()
        )
    outcomes = []
    for rcpt in report.recipients:
        kind = _ACTIONS.get(rcpt.action)
        if kind is None:
            outcomes.append(applying.IGNORED)
            continue
        mta = f"{rcpt.status} {rcpt.diagnostic}".strip()
        identity = "\x00".join(
            (report.report_id, report.original_message_id, rcpt.address.lower(), rcpt.action)
        )
        event = applying.Event(
            kind=kind,
            esp=esp,
            recipient=rcpt.address,
            message_id=report.original_message_id,
            event_id="dsn:" + hashlib.sha256(identity.encode("utf-8", "replace")).hexdigest(),
            description=f"DSN: {rcpt.action} {rcpt.status}".strip(),
            mta_response=mta,
            metadata={"smtprelay_id": f"smtprelay-{message_pk}"} if message_pk else {},
            hard=rcpt.status.startswith("5") if kind == RecipientEvent.Kind.BOUNCED else None,
            source=RecipientEvent.Source.DSN,
            summary={
                "report_id": report.report_id[:255],
                "original_message_id": report.original_message_id[:255],
                "recipient": rcpt.address[:254],
                "action": rcpt.action[:20],
                "status": rcpt.status[:20],
            },
        )
        if message_pk is None:
            applying.count_unmatched(event, route_pk)
            outcomes.append(applying.UNMATCHED)
            continue
        outcomes.append(applying.apply(event, route_pk=route_pk))
    return outcomes
