"""Our own id for a message and its recipients, for ESPs and bounces to echo back.

An ESP route (or any sender) adds it as anymail metadata (ESPs echo metadata
in every webhook event) and as the ``X-SMTPRelay-ID`` header (returned in a
bounce's copy of the original headers). The id names the message and, per
recipient, the recipient row, so an event finds its row without relying on
the provider's message id.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

#: The header a returned bounce (DSN) copies from the original message.
HEADER = "X-SMTPRelay-ID"
#: The anymail metadata key an ESP echoes in its events.
METADATA_KEY = "smtprelay_id"

_ID = re.compile(r"^\s*<?smtprelay-(\d{1,19})(?:\.(\d{1,19}))?>?\s*$")


def smtprelay_id(message_pk: int, recipient_pk: int | None = None) -> str:
    """``smtprelay-<message>`` or, for one recipient, ``smtprelay-<message>.<recipient>``."""
    if recipient_pk is None:
        return f"smtprelay-{message_pk}"
    return f"smtprelay-{message_pk}.{recipient_pk}"


def parse_smtprelay_id(value: object) -> tuple[int, int | None] | None:
    """``(message pk, recipient pk or None)`` from an id made by :func:`smtprelay_id`."""
    if not isinstance(value, str):
        return None
    match = _ID.match(value)
    if match is None:
        return None
    recipient = match.group(2)
    return int(match.group(1)), int(recipient) if recipient else None


def esp_metadata(
    message_pk: int, recipients: Iterable[tuple[int, str]]
) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """anymail ``metadata`` and ``merge_metadata`` for a message sent through an ESP.

    ``recipients``: ``(recipient pk, address)`` pairs. The sending side sets
    ``msg.metadata, msg.merge_metadata = esp_metadata(...)`` and the header
    ``msg.extra_headers[HEADER] = smtprelay_id(message_pk)``; the ESP then
    reports every event with the recipient's own id.
    """
    merge = {address: {METADATA_KEY: smtprelay_id(message_pk, pk)} for pk, address in recipients}
    return {METADATA_KEY: smtprelay_id(message_pk)}, merge


def smtp_tracking_headers(esp: str, message_pk: int) -> dict[str, str]:
    """Headers that make an ESP's SMTP endpoint echo our id in its webhook events.

    For mail sent to an ESP over SMTP (no anymail metadata there): each ESP
    reads its own header into the event's metadata. Every ESP also gets
    ``X-SMTPRelay-ID``, which returned bounces (DSNs) carry back.
    """
    ours = smtprelay_id(message_pk)
    metadata = json.dumps({METADATA_KEY: ours}, separators=(",", ":"))
    headers = {HEADER: ours}
    extra = {
        "amazon_ses": {"X-Metadata": metadata},  # event publishing returns the headers
        "postmark": {f"X-PM-Metadata-{METADATA_KEY}": ours},
        "mailgun": {"X-Mailgun-Variables": metadata},
        "sendgrid": {
            "X-SMTPAPI": json.dumps({"unique_args": {METADATA_KEY: ours}}, separators=(",", ":"))
        },
        "brevo": {"X-Mailin-custom": metadata},
        "mailjet": {"X-MJ-EventPayload": metadata},
    }.get(esp, {})
    return {**headers, **extra}
