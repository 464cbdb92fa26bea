"""Route health as operators see it: circuit state, throttling and score.

The live counters sit in the cache (see :mod:`django_smtprelay.health`); this
row is written only when something changes that an operator should see (a
circuit opens or closes, a route is slowed down, a score is refreshed at most
every 30 seconds), so it survives restarts without a write per message.

It is keyed by route name rather than a foreign key: the route built from the
site's ``EMAIL_*`` settings has no ``Route`` row but has health all the same.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class RouteHealth(models.Model):
    class State(models.TextChoices):
        CLOSED = "closed", _("Closed: sending")
        OPEN = "open", _("Open: not sending")
        HALF_OPEN = "half_open", _("Half-open: one probe")

    route_name = models.CharField(max_length=150, unique=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.CLOSED)
    opened_at = models.DateTimeField(
        null=True, blank=True, help_text=_("When the circuit last opened (or reopened).")
    )
    open_until = models.DateTimeField(
        null=True, blank=True, help_text=_("End of the cool-down; then one probe goes through.")
    )
    reason = models.TextField(blank=True, help_text=_("Why the circuit last changed state."))
    consecutive_faults = models.PositiveIntegerField(default=0)
    score = models.FloatField(
        default=1.0, help_text=_("1 is as good as its peers; lower gets less traffic.")
    )
    score_reason = models.TextField(blank=True)
    throttled_until = models.DateTimeField(
        null=True, blank=True, help_text=_("Limits are reduced until then after throttling.")
    )
    throttle_reason = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("route_name",)
        verbose_name = _("route health")
        verbose_name_plural = _("route health")

    def __str__(self) -> str:
        return f"{self.route_name}: {self.get_state_display()}"
