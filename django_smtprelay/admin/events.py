"""Every event an ESP or a returned bounce reported: read-only, newest first."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from ..models import RecipientEvent
from .base import PlainHelpTextAdmin
from .queue_badges import state_badge


@admin.register(RecipientEvent)
class RecipientEventAdmin(PlainHelpTextAdmin):
    list_display = ("at", "kind_badge", "recipient_link", "esp", "source", "hard", "description")
    list_filter = ("kind", "esp", "source", "hard")
    search_fields = ("recipient__address", "event_id")
    list_select_related = ("recipient",)
    list_per_page = 100
    show_full_result_count = False
    ordering = ("-pk",)
    fields = (
        "recipient",
        "kind",
        "hard",
        "at",
        "received_at",
        "esp",
        "source",
        "event_id",
        "description",
        "mta_response",
        "summary",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description=_("event"), ordering="kind")
    def kind_badge(self, obj: RecipientEvent) -> SafeString:
        return state_badge(obj.kind, obj.get_kind_display())

    @admin.display(description=_("recipient"), ordering="recipient__address")
    def recipient_link(self, obj: RecipientEvent) -> SafeString:
        url = reverse("admin:django_smtprelay_recipient_change", args=[obj.recipient_id])
        return format_html('<a href="{}">{}</a>', url, obj.recipient.address)
