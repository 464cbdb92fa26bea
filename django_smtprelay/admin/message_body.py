"""A message's body in the admin: a text and HTML preview, and the .eml download.

Bodies may hold what only some staff may read (reset links, personal data),
so both need the ``view_message_body`` permission. The HTML part is shown in
an iframe with ``sandbox=""`` (no scripts, no forms, no navigation) and a
Content-Security-Policy that loads nothing remote: opening a message never
tells a tracker that it was read, and never runs what it carries.
"""

from __future__ import annotations

from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage

from django.http import HttpRequest, HttpResponse

from ..models import Message, MessageContent

BODY_PERMISSION = "django_smtprelay.view_message_body"

# A preview shows this much of each part; the .eml has it all.
PREVIEW_LIMIT = 200_000

CSP = "default-src 'none'; img-src data: cid:; style-src 'unsafe-inline'"


def may_see_body(request: HttpRequest) -> bool:
    return request.user.has_perm(BODY_PERMISSION)


@dataclass
class Preview:
    headers: str
    text: str | None
    html_srcdoc: str | None
    truncated: bool


def _part(parsed: EmailMessage, subtype: str) -> tuple[str | None, bool]:
    part = parsed.get_body(preferencelist=(subtype,))
    if part is None:
        return None, False
    try:
        content = part.get_content()
    except (LookupError, ValueError):  # an unknown charset or a broken transfer encoding
        content = part.get_payload(decode=True).decode("utf-8", "replace")
    if not isinstance(content, str):
        return None, False
    return content[:PREVIEW_LIMIT], len(content) > PREVIEW_LIMIT


def preview(raw: bytes) -> Preview:
    """The headers, the text part and the HTML part (as a sandboxed iframe's document)."""
    parsed = message_from_bytes(raw, policy=policy.default)
    text, text_cut = _part(parsed, "plain")
    html, html_cut = _part(parsed, "html")
    srcdoc = None
    if html is not None:
        srcdoc = f'<meta http-equiv="Content-Security-Policy" content="{CSP}">' + html
    headers = "\n".join(f"{k}: {v}" for k, v in parsed.items())
    return Preview(headers, text, srcdoc, text_cut or html_cut)


def raw_of(message: Message) -> bytes | None:
    raw = MessageContent.objects.filter(message_id=message.pk).values_list("raw", flat=True).first()
    return None if raw is None else bytes(raw)


def eml_response(message: Message, raw: bytes) -> HttpResponse:
    response = HttpResponse(raw, content_type="message/rfc822")
    response["Content-Disposition"] = f'attachment; filename="message-{message.pk}.eml"'
    response["X-Content-Type-Options"] = "nosniff"
    return response
