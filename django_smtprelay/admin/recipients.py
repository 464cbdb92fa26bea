"""Every recipient with its own fate: the place to find each failed delivery.

A message with one failed recipient among delivered ones is "sent", and a
suppressed recipient has no attempt; this list finds both. Read-only like the
message pages: the workers own these rows.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from ..models import Recipient, RecipientEvent
from .base import PlainHelpTextAdmin
from .filters import (
    RecipientDomainFilter,
    RecipientStatusFilter,
    RecipientTimeFilter,
    SmtpCodeFilter,
)
from .paginator import HistoryPaginator
from .queue_badges import address, route_and_code_cell, short_time, state_badge, wrapped
from .recipient_search import recipient_condition


class RecipientEventInline(admin.TabularInline):
    """What the ESP (or a returned bounce) said about this recipient, oldest first."""

    model = RecipientEvent
    fields = ("at", "kind", "hard", "esp", "source", "description", "mta_response", "event_id")
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ("at", "pk")
    verbose_name_plural = _("events after the relay said yes")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Recipient)
class RecipientAdmin(PlainHelpTextAdmin):
    # Narrow columns, each secondary fact under the main one, so the whole
    # reply fits beside them at 1280 px.
    inlines = (RecipientEventInline,)
    list_display = (
        "address_cell",
        "status_badge",
        "message_link",
        "route_and_code",
        "reply_wrapped",
    )
    list_display_links = None
    list_filter = (
        RecipientStatusFilter,
        RecipientTimeFilter,
        "route",
        SmtpCodeFilter,
        RecipientDomainFilter,
    )
    search_fields = ("address",)
    search_help_text = _(
        "A whole address (any case), @domain for every recipient at a domain, "
        "or part of an address."
    )
    list_select_related = ("message", "route")
    list_per_page = 100
    paginator = HistoryPaginator  # counts stop at a cap (paginator.py)
    show_full_result_count = False
    ordering = ("-pk",)  # the latest first, along the primary key (no sort of the table)
    fields = (
        "address",
        "status",
        "message",
        "route",
        "smtp_code",
        "enhanced_code",
        "reply",
        "provider_message_id",
        "updated_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        condition = recipient_condition(search_term)  # @domain, or one address: an index
        if condition is not None:
            return queryset.filter(condition), False
        return super().get_search_results(request, queryset, search_term)

    @admin.display(description=_("status, updated"), ordering="updated_at")
    def status_badge(self, obj: Recipient) -> SafeString:
        """The state with when it was reached: one column, so the reply fits at 1400 px."""
        if obj.updated_at is None:
            return format_html(
                "{}<div class='help'>{}</div>",
                state_badge(obj.status, obj.get_status_display()),
                _("not tried yet"),
            )
        return format_html(
            '{}<div class="help">{}</div>',
            state_badge(obj.status, obj.get_status_display()),
            short_time(obj.updated_at),
        )

    @admin.display(description=_("message"), ordering="message__created_at")
    def message_link(self, obj: Recipient) -> SafeString:
        url = reverse("admin:django_smtprelay_message_change", args=[obj.message_id])
        return format_html(
            '<a href="{}">{}</a> {}',
            url,
            obj.message.subject or _("(no subject)"),
            state_badge(obj.message.status, obj.message.get_status_display()),
        )

    @admin.display(description=_("address"), ordering="address")
    def address_cell(self, obj: Recipient) -> SafeString:
        url = reverse("admin:django_smtprelay_recipient_change", args=[obj.pk])
        return format_html('<a href="{}">{}</a>', url, address(obj.address))

    @admin.display(description=_("route, code"), ordering="smtp_code")
    def route_and_code(self, obj: Recipient) -> SafeString | str:
        return route_and_code_cell(obj)

    @admin.display(description=_("reply"))
    def reply_wrapped(self, obj: Recipient) -> SafeString | str:
        return wrapped(obj.reply)
