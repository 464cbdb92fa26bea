"""List filters for the queue: time windows, recipient domain, route, reply code.

Their choices never scan the whole queue: a page of the message or recipient
list must cost the same with ten thousand rows as with a million, so the
domains and codes offered come from the latest rows only (any other value still
works typed into the URL, or as ``@domain`` in the search box). The domain is
read from ``Recipient.domain``, an index range (see ``recipient_search``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import admin
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from ..models import DeliveryAttempt, DkimKey, Message, Recipient, Route
from ..replies import Stage
from .recipient_search import domain_key, domain_label

# How many of the latest recipients the offered domains and codes come from.
SAMPLE = 1000

WINDOWS = {
    "1h": (timedelta(hours=1), _("Last hour")),
    "24h": (timedelta(hours=24), _("Last 24 hours")),
    "7d": (timedelta(days=7), _("Last 7 days")),
}


def recent_recipients() -> QuerySet[Recipient]:
    return Recipient.objects.order_by("-pk")[:SAMPLE]


class RecipientStatusFilter(admin.SimpleListFilter):
    """The states in the order an operator looks for them: failures first."""

    title = _("status")
    parameter_name = "status"
    ORDER = ("failed", "deferred", "suppressed", "delivered", "cancelled", "pending")

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        labels = dict(Recipient.Status.choices)
        return [(value, labels[value]) for value in self.ORDER]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(status=self.value()) if self.value() else queryset


class RecipientTimeFilter(admin.SimpleListFilter):
    """When the recipient last changed; one never tried counts from its message's creation."""

    title = _("updated")
    parameter_name = "updated"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(key, label) for key, (_span, label) in WINDOWS.items()]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() not in WINDOWS:
            return queryset
        since = timezone.now() - WINDOWS[self.value()][0]
        return queryset.filter(
            Q(updated_at__gte=since) | Q(updated_at__isnull=True, message__created_at__gte=since)
        )


class RecipientDomainFilter(admin.SimpleListFilter):
    """Recipients at one domain (``?domain=example.com``); the latest rows' domains are offered."""

    title = _("recipient domain")
    parameter_name = "domain"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        # The sample's rows are read by their ids, not sorted: a set of strings.
        domains = sorted(set(recent_recipients().values_list("domain", flat=True)) - {""})[:30]
        current = self.value()
        if current and current not in domains:
            domains.append(current)
        return [(d, domain_label(d)) for d in domains]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if not self.value():
            return queryset
        return queryset.filter(domain=domain_key(self.value()))


class MessageRecipientDomainFilter(RecipientDomainFilter):
    """Messages with any recipient at one domain."""

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if not self.value():
            return queryset
        at = Recipient.objects.filter(message=OuterRef("pk"), domain=domain_key(self.value()))
        return queryset.filter(Exists(at))


class SenderDomainFilter(admin.SimpleListFilter):
    """Messages from one sender domain; the latest messages' domains are offered."""

    title = _("sender domain")
    parameter_name = "sender_domain"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        recent = Message.objects.order_by("-pk").values_list("sender_domain", flat=True)
        choices = sorted(set(recent[:SAMPLE]) - {""})[:30]
        if self.value() and self.value() not in choices:
            choices.append(self.value())
        return [(d, d) for d in choices]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(sender_domain=self.value()) if self.value() else queryset


class SmtpCodeFilter(admin.SimpleListFilter):
    """A reply class (4xx, 5xx) or one code; the latest rows' codes are offered."""

    title = _("SMTP code")
    parameter_name = "code"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        codes = {
            c for c in recent_recipients().values_list("smtp_code", flat=True) if c is not None
        }
        return [("4xx", "4xx"), ("5xx", "5xx")] + [(str(c), str(c)) for c in sorted(codes)]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value() or ""
        if value in ("4xx", "5xx"):
            low = int(value[0]) * 100
            return queryset.filter(smtp_code__gte=low, smtp_code__lt=low + 100)
        if value.isdigit():
            return queryset.filter(smtp_code=int(value))
        return queryset


class MessageRouteFilter(admin.SimpleListFilter):
    """Messages any of whose recipients went (or was last tried) through a route."""

    title = _("route")
    parameter_name = "route"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(str(pk), name) for pk, name in Route.objects.values_list("pk", "name")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if not (self.value() or "").isdigit():
            return queryset
        return queryset.filter(
            Exists(Recipient.objects.filter(message=OuterRef("pk"), route_id=int(self.value())))
        )


class MessageAgeFilter(admin.SimpleListFilter):
    """Messages created within a window, or older than one (what has waited too long)."""

    title = _("age")
    parameter_name = "age"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("1h", _("Under an hour")),
            ("24h", _("Under a day")),
            ("7d", _("Under a week")),
            ("over-1h", _("Over an hour")),
            ("over-24h", _("Over a day")),
            ("over-7d", _("Over a week")),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value() or ""
        older = value.startswith("over-")
        key = value.removeprefix("over-")
        if key not in WINDOWS:
            return queryset
        since = timezone.now() - WINDOWS[key][0]
        return (
            queryset.filter(created_at__lt=since)
            if older
            else queryset.filter(created_at__gte=since)
        )


class AttemptRouteFilter(admin.SimpleListFilter):
    """Attempts over one route, by name: the routes, and those of the latest attempts, are offered.

    Its parameter is the one the dashboard's error links use.
    """

    title = _("route")
    parameter_name = "route_name__exact"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        recent = DeliveryAttempt.objects.order_by("-pk").values_list("route_name", flat=True)
        names = set(Route.objects.values_list("name", flat=True)) | set(recent[:SAMPLE])
        if self.value():
            names.add(self.value())
        return [(name, name) for name in sorted(names)]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(route_name=self.value()) if self.value() else queryset


class AttemptStageFilter(admin.SimpleListFilter):
    """The SMTP stage an attempt ended at (the stages are known: nothing is read to list them)."""

    title = _("stage")
    parameter_name = "stage__exact"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(stage.value, stage.value) for stage in Stage]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(stage=self.value()) if self.value() else queryset


class AttemptDkimKeyFilter(admin.SimpleListFilter):
    """Attempts signed with one DKIM key (which mail a key in rotation still signed)."""

    title = _("DKIM key")
    parameter_name = "dkim_key"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        keys = DkimKey.objects.select_related("domain").order_by("domain__domain", "selector")
        return [("unsigned", _("Unsigned"))] + [(str(k.pk), k.name) for k in keys]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value() or ""
        if value == "unsigned":
            return queryset.filter(dkim_keys="")
        keys = DkimKey.objects.select_related("domain")
        key = keys.filter(pk=int(value)).first() if value.isdigit() else None
        if key is None:
            return queryset
        # Names are space-separated: match one whole, not a longer one ending with it.
        name = key.name
        return queryset.filter(
            Q(dkim_keys=name)
            | Q(dkim_keys__startswith=f"{name} ")
            | Q(dkim_keys__endswith=f" {name}")
            | Q(dkim_keys__contains=f" {name} ")
        )
