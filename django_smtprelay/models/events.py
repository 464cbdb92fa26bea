"""What happened to a recipient after the relay said yes: the provider's events."""

from __future__ import annotations

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .messages import Recipient


class RecipientEvent(models.Model):
    """One event an ESP (or a returned delivery status notification) reported.

    ``dedupe_key`` makes events idempotent: an ESP that retries a webhook
    posts the same event again, and the second insert is refused by the
    unique constraint rather than recorded twice.
    """

    class Kind(models.TextChoices):
        QUEUED = "queued", _("Queued at the ESP")
        SENT = "sent", _("Sent by the ESP")
        DELIVERED = "delivered", _("Delivered to the mailbox")
        DEFERRED = "deferred", _("Deferred by the receiving server")
        BOUNCED = "bounced", _("Bounced")
        REJECTED = "rejected", _("Rejected by the ESP")
        FAILED = "failed", _("Failed at the ESP")
        COMPLAINED = "complained", _("Marked as spam")
        UNSUBSCRIBED = "unsubscribed", _("Unsubscribed")
        OPENED = "opened", _("Opened")
        CLICKED = "clicked", _("Clicked")

    class Source(models.TextChoices):
        WEBHOOK = "webhook", _("ESP webhook")
        DSN = "dsn", _("Returned bounce (DSN)")

    recipient = models.ForeignKey(Recipient, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    at = models.DateTimeField(
        default=timezone.now, help_text=_("When the provider says it happened.")
    )
    received_at = models.DateTimeField(default=timezone.now)
    esp = models.CharField(_("ESP"), max_length=40, blank=True)
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.WEBHOOK)
    event_id = models.CharField(
        max_length=255, blank=True, help_text=_("The provider's id for this event, if it has one.")
    )
    # sha256 of the event's identity (ESP, event id or its fields, recipient, kind).
    dedupe_key = models.CharField(max_length=64, unique=True, editable=False)
    hard = models.BooleanField(
        default=False, help_text=_("A permanent failure (hard bounce): the address is not retried.")
    )
    description = models.TextField(blank=True)
    mta_response = models.TextField(_("receiving server's reply"), blank=True)
    # The normalized event, bounded, with no credentials or signatures in it.
    summary = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ("at", "pk")
        indexes = [models.Index(fields=["recipient", "at"], name="smtprelay_event_rcpt_at")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} ({self.esp or self.source})"
