"""Addresses that are not sent to."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class Suppression(models.Model):
    """An address the site must not send to, and why."""

    class Source(models.TextChoices):
        MANUAL = "manual", _("Added by hand")
        BOUNCE = "bounce", _("Permanent failure")
        COMPLAINT = "complaint", _("Complaint")
        UNSUBSCRIBE = "unsubscribe", _("Unsubscribe")

    address = models.CharField(max_length=254, unique=True)
    reason = models.TextField(blank=True)
    source = models.CharField(max_length=20, choices=Source.choices, default=Source.MANUAL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return self.address

    def save(self, *args: object, **kwargs: object) -> None:
        self.address = self.address.strip().lower()
        super().save(*args, **kwargs)
