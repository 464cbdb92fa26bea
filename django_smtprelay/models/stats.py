"""Hourly delivery statistics: what the dashboard and the metrics read.

They are written by the result writer in the same transaction as the
attempts they count (see :mod:`django_smtprelay.delivery.stats`), so they always agree
with the attempts and a page view never scans the attempts or the messages:
24 hours of one route are at most 24 x 6 rows whatever the traffic. They are
kept when retention purges attempts and bodies.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from .messages import DeliveryAttempt, Message

# Upper bounds (seconds) of the latency buckets; the last bucket is open.
LATENCY_BOUNDS = (0.1, 0.5, 1.0, 5.0)
LATENCY_COLUMNS = ("lat_lt_100ms", "lat_lt_500ms", "lat_lt_1s", "lat_lt_5s", "lat_ge_5s")


class DeliveryStat(models.Model):
    """Attempts of one hour over one route with one outcome, and how long they took."""

    hour = models.DateTimeField(help_text=_("The hour's start (UTC)."))
    route_name = models.CharField(max_length=100)
    outcome = models.CharField(max_length=12, choices=DeliveryAttempt.Outcome.choices)
    count = models.PositiveIntegerField(default=0)
    duration_total = models.FloatField(default=0.0, help_text=_("Seconds, for the mean."))
    lat_lt_100ms = models.PositiveIntegerField(default=0)
    lat_lt_500ms = models.PositiveIntegerField(default=0)
    lat_lt_1s = models.PositiveIntegerField(default=0)
    lat_lt_5s = models.PositiveIntegerField(default=0)
    lat_ge_5s = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ("-hour", "route_name", "outcome")
        verbose_name = _("delivery statistic")
        constraints = [
            models.UniqueConstraint(
                fields=["hour", "route_name", "outcome"], name="smtprelay_deliverystat_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H:00} {self.route_name} {self.outcome}: {self.count}"

    @property
    def buckets(self) -> list[int]:
        return [getattr(self, name) for name in LATENCY_COLUMNS]


class MessageStat(models.Model):
    """Messages that reached a state in one hour: sent, failed, or deferred for
    the first time.

    Each message counts once per state: a message deferred three times before
    it was sent counts once in "deferred" (the hour of its first deferral) and
    once in "sent". Retries are attempts (:class:`DeliveryStat`), not
    messages. Cancelled messages are not counted.
    """

    hour = models.DateTimeField(help_text=_("The hour's start (UTC)."))
    status = models.CharField(max_length=10, choices=Message.Status.choices)
    count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ("-hour", "status")
        verbose_name = _("message statistic")
        constraints = [
            models.UniqueConstraint(fields=["hour", "status"], name="smtprelay_messagestat_key")
        ]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H:00} {self.status}: {self.count}"


class ErrorStat(models.Model):
    """Failed attempts of one hour with the same route, outcome, codes and normalised reply.

    A code of 0 is an attempt without a reply code (a connection refused, say).
    """

    hour = models.DateTimeField(help_text=_("The hour's start (UTC)."))
    route_name = models.CharField(max_length=100)
    outcome = models.CharField(max_length=12, choices=DeliveryAttempt.Outcome.choices)
    smtp_code = models.PositiveSmallIntegerField(
        default=0, help_text=_("The refusal's code (for a partial delivery, not the attempt's).")
    )
    enhanced_code = models.CharField(max_length=16, blank=True)
    text = models.CharField(
        max_length=255, blank=True, help_text=_("The reply with numbers, ids and addresses masked.")
    )
    count = models.PositiveIntegerField(default=0)
    last_seen = models.DateTimeField(help_text=_("When an attempt last got this reply."))
    example_message_id = models.BigIntegerField(
        null=True, blank=True, help_text=_("One message that got this reply (it may be purged).")
    )

    class Meta:
        ordering = ("-hour", "-count")
        verbose_name = _("error statistic")
        constraints = [
            models.UniqueConstraint(
                fields=["hour", "route_name", "outcome", "smtp_code", "enhanced_code", "text"],
                name="smtprelay_errorstat_key",
            )
        ]

    def __str__(self) -> str:
        return f"{self.route_name} {self.smtp_code} {self.enhanced_code} {self.text}: {self.count}"
