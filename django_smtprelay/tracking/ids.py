"""Our own id for a message and its recipients, for ESPs and bounces to echo back.

An ESP route sends it as anymail metadata, which ESPs echo in every
webhook event (not to Amazon SES, which gets the stored bytes as they are).
A sender may also add the ``X-SMTPRelay-ID`` header, which a returned
bounce carries back in its copy of the original headers. The id names the
message and, for one recipient, the recipient row, so an event finds its
row without relying on the provider's message id.
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

    ``recipients``: ``(recipient pk, address)`` pairs. For a site's own batch
    sends only: anymail treats a message with ``merge_metadata`` as a batch
    and sends each To recipient a message of their own. An ESP route sends
    the message as the site sent it, with ``metadata`` alone: the
    recipient's id when it goes to one recipient, else the message's (an
    event then finds its recipient by the message and its address).
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
