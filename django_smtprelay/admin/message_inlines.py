"""A message's recipients and attempts on its page: read-only, and capped.

A bulk message may have ten thousand recipients and a troubled one hundreds
of attempts; a page that rendered them all would take seconds and show
nothing anyone can read. Each inline shows the first ``SHOWN`` rows and says
how many there are, with a link to the list filtered to this message, where
the rest can be paged, searched and filtered.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import admin
from django.db.models import QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from ..models import DeliveryAttempt, Recipient
from .base import PlainHelpTextTabularInline
from .queue_badges import (
    address,
    attempt_outcome_cell,
    duration_text,
    help_line,
    route_and_code_cell,
    short_time,
    state_badge,
    wrapped,
)

# Rows shown per inline (and per kind of event in the timeline).
SHOWN = 50


def filtered_list_url(model: type, message_id: int) -> str:
    """The admin list of ``model`` rows of one message."""
    opts = model._meta
    changelist = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
    return f"{changelist}?{urlencode({'message__id__exact': message_id})}"


class CappedInlineFormSet(BaseInlineFormSet):
    """The first ``SHOWN`` rows; ``total`` and ``more_url`` are set when there are more."""

    total: int | None = None
    more_url: str = ""

    def get_queryset(self) -> QuerySet:
        if not hasattr(self, "_capped"):
            rows = super().get_queryset()
            self._capped = rows[:SHOWN]
            # A count only when the page is full: a small message costs no query more.
            if len(self._capped) == SHOWN and self.instance.pk is not None:
                self.total = rows.count()
                if self.total > SHOWN:
                    self.more_url = filtered_list_url(self.model, self.instance.pk)
        return self._capped


class ReadOnlyInline(PlainHelpTextTabularInline):
    """Rows the workers write: shown, never added, changed or deleted here."""

    extra = 0
    can_delete = False
    formset = CappedInlineFormSet

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class RecipientInline(ReadOnlyInline):
    model = Recipient
    fields = ("address_cell", "state", "route_and_code", "reply_wrapped", "updated")
    readonly_fields = fields
    ordering = ("pk",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Recipient]:
        # Each row shows its route: one join, not a query per recipient.
        return super().get_queryset(request).select_related("route")

    @admin.display(description=_("address"))
    def address_cell(self, obj: Recipient) -> SafeString:
        return address(obj.address)

    @admin.display(description=_("status"))
    def state(self, obj: Recipient) -> SafeString:
        return state_badge(obj.status, obj.get_status_display())

    @admin.display(description=_("route, code"))
    def route_and_code(self, obj: Recipient) -> SafeString | str:
        return route_and_code_cell(obj)

    @admin.display(description=_("reply"))
    def reply_wrapped(self, obj: Recipient) -> SafeString | str:
        return wrapped(obj.reply)

    @admin.display(description=_("updated"))
    def updated(self, obj: Recipient) -> SafeString | str:
        return short_time(obj.updated_at) if obj.updated_at else "-"


class AttemptInline(ReadOnlyInline):
    model = DeliveryAttempt
    fields = ("started", "outcome_cell", "code", "reply_wrapped")
    readonly_fields = fields
    ordering = ("started_at", "pk")

    @admin.display(description=_("started, took"))
    def started(self, obj: DeliveryAttempt) -> SafeString:
        took = duration_text(obj.duration.total_seconds())
        return format_html("{}{}", short_time(obj.started_at), help_line(took))

    @admin.display(description=_("outcome, route"))
    def outcome_cell(self, obj: DeliveryAttempt) -> SafeString:
        return attempt_outcome_cell(obj)

    @admin.display(description=_("code"))
    def code(self, obj: DeliveryAttempt) -> SafeString | str:
        text = " ".join(str(c) for c in (obj.smtp_code, obj.enhanced_code) if c)
        return format_html('<span style="white-space:nowrap">{}</span>', text) if text else "-"

    @admin.display(description=_("reply"))
    def reply_wrapped(self, obj: DeliveryAttempt) -> SafeString | str:
        return wrapped(obj.reply or (f"({obj.exception})" if obj.exception else ""))
