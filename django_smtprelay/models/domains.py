"""Sending domains and their DNS status."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from ..validators import split_list, validate_domain_name, validate_selector_list


class SenderDomain(models.Model):
    """A domain the site sends from; created when a message is first queued from it."""

    class Verdict(models.TextChoices):
        UNCHECKED = "unchecked", _("Not checked yet")
        OK = "ok", _("OK")
        WARNING = "warning", _("Warning")
        FAILING = "failing", _("Failing")
        UNKNOWN = "unknown", _("Could not check")

    domain = models.CharField(max_length=253, unique=True, validators=[validate_domain_name])
    verdict = models.CharField(max_length=10, choices=Verdict.choices, default=Verdict.UNCHECKED)
    checked_at = models.DateTimeField(null=True, blank=True)
    records = models.JSONField(default=dict, blank=True)
    findings = models.JSONField(default=list, blank=True)
    route_results = models.JSONField(default=list, blank=True)
    areas = models.JSONField(
        default=dict, blank=True, help_text=_("Status per area (spf, dmarc, dkim, ...).")
    )
    checklist = models.JSONField(
        default=list, blank=True, help_text=_("Mailbox providers' sender requirements.")
    )
    check_duration = models.DurationField(null=True, blank=True)
    dkim_selectors = models.CharField(
        _("DKIM selectors"),
        max_length=255,
        blank=True,
        validators=[validate_selector_list],
        help_text=_(
            "Comma-separated DKIM selectors to check, besides those of routes that sign "
            "for this domain."
        ),
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("domain",)
        # The README's word for them, and the one the dashboard uses.
        verbose_name = _("sending domain")
        verbose_name_plural = _("sending domains")

    def __str__(self) -> str:
        return self.domain

    def save(self, *args: object, **kwargs: object) -> None:
        self.domain = self.domain.strip().lower().rstrip(".")
        super().save(*args, **kwargs)

    @property
    def selectors(self) -> list[str]:
        """The DKIM selectors entered by hand, parsed."""
        return [s.lower() for s in split_list(self.dkim_selectors)]
