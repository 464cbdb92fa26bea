"""The id a relay names in its 250 reply to the message's final dot.

An ESP's SMTP endpoint says which id it gave the message, and its webhooks
report on the message by that id, so keeping it lets those events find the
recipients. The forms seen in the wild (the enhanced code, if any, is already
split off by the reply parser):

- Amazon SES: ``250 Ok 0100018c7c2a1b2c-...-000000`` (the SES message id)
- SendGrid, Postfix and most MTAs: ``250 Ok: queued as 8WBU5yLSRyKOxU1QUE8OIA``
- SparkPost: ``250 2.0.0 OK 23/4B-01234-5678ABCD`` style queue ids
- bracketed: ``250 Ok <20240101.abc@relay.example>`` or ``queued as <...>``

A reply with no such id (Mailgun's ``250 Great success``, Postmark's
``250 Ok``) gives none: those ESPs report by the message's own Message-ID,
which the events are matched by as well.
"""

from __future__ import annotations

import re

# "queued as X" anywhere in the reply (X bracketed or not).
_QUEUED_AS = re.compile(r"\bqueued\s+as\s+<?([^\s<>]{4,255})>?", re.IGNORECASE)
# "Ok X" / "Ok: X" / "OK id=X" at the start: X must look like an id (digits or
# separators in it), so "Ok thanks" or "OK message accepted" give nothing.
_OK_ID = re.compile(r"^ok:?\s+(?:id=)?<?([A-Za-z0-9][\w.@+=/:-]{5,254})>?\s*$", re.IGNORECASE)
_ID_EQ = re.compile(r"\b(?:id|message-id|msgid)=<?([\w.@+=/:-]{4,255})>?", re.IGNORECASE)


def provider_id_from_reply(text: str) -> str:
    """The message id a relay named in its acceptance, or '' if it named none."""
    text = text.strip()
    if not text:
        return ""
    match = _QUEUED_AS.search(text) or _OK_ID.match(text) or _ID_EQ.search(text)
    if match is None:
        return ""
    found = match.group(1)
    if match.re is _OK_ID and not any(c.isdigit() or c in "-./@=" for c in found):
        return ""
    return found
