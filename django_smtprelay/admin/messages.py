"""The queue in the admin: every message, its recipients and every attempt.

The workers own these rows (status, lease, next attempt): a form that saved a
copy loaded before would undo what a worker wrote meanwhile. So every page
here is read-only, and state changes go through actions, each one guarded
``UPDATE`` of the queryset.
"""

from __future__ import annotations

from email import message_from_bytes, policy

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from ..models import DeliveryAttempt, Message, MessageContent, Recipient
from ..models.messages import MessageQuerySet
from .base import PlainHelpTextAdmin, PlainHelpTextTabularInline


class ReadOnlyInline(PlainHelpTextTabularInline):
    """Rows the workers write: shown, never added, changed or deleted here."""

    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class RecipientInline(ReadOnlyInline):
    model = Recipient
    fields = ("address", "status", "smtp_code", "enhanced_code", "reply", "route", "updated_at")
    readonly_fields = fields


class AttemptInline(ReadOnlyInline):
    model = DeliveryAttempt
    fields = (
        "started_at",
        "route_name",
        "outcome",
        "stage",
        "smtp_code",
        "enhanced_code",
        "reply",
        "exception",
        "duration",
        "possible_duplicate",
    )
    readonly_fields = fields
    ordering = ("started_at", "pk")


@admin.register(Message)
class MessageAdmin(PlainHelpTextAdmin):
    list_display = (
        "id",
        "subject",
        "from_email",
        "status_badge",
        "priority",
        "attempt_count",
        "created_at",
        "next_attempt_at",
        "last_error_short",
    )
    list_filter = ("status", "priority", "sender_domain")
    search_fields = ("subject", "from_email", "message_id", "recipients__address")
    date_hierarchy = "created_at"
    inlines = (RecipientInline, AttemptInline)
    actions = ("retry_now", "cancel")
    list_per_page = 50
    show_full_result_count = False  # COUNT(*) over a large queue is slow
    readonly_fields = (
        "status",
        "priority",
        "from_email",
        "sender_domain",
        "subject",
        "message_id",
        "size",
        "route_hint",
        "created_at",
        "next_attempt_at",
        "expires_at",
        "sent_at",
        "attempt_count",
        "last_error",
        "headers",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Message | None = None) -> bool:
        # A message's page is read-only (a POST to it is refused, nothing is
        # written); the model-level permission still grants the actions.
        if obj is not None:
            return False
        return super().has_change_permission(request)

    @admin.display(description=_("status"), ordering="status")
    def status_badge(self, obj: Message) -> str:
        colours = {
            Message.Status.SENT: "#2e7d32",
            Message.Status.FAILED: "#c62828",
            Message.Status.DEFERRED: "#ef6c00",
            Message.Status.SENDING: "#1565c0",
            Message.Status.CANCELLED: "#616161",
        }
        return format_html(
            '<strong style="color:{}">{}</strong>',
            colours.get(obj.status, "inherit"),
            obj.get_status_display(),
        )

    @admin.display(description=_("last error"))
    def last_error_short(self, obj: Message) -> str:
        return obj.last_error[:80]

    @admin.display(description=_("headers"))
    def headers(self, obj: Message) -> str:
        raw = MessageContent.objects.filter(message_id=obj.pk).values_list("raw", flat=True).first()
        if raw is None:
            return "-"
        raw = bytes(raw)
        head = raw.split(b"\r\n\r\n", 1)[0]
        parsed = message_from_bytes(head + b"\r\n\r\n", policy=policy.default)
        lines = "\n".join(f"{k}: {v}" for k, v in parsed.items())
        return format_html("<pre style='white-space:pre-wrap'>{}</pre>", lines)

    @admin.action(description=_("Retry selected messages now"), permissions=["change"])
    def retry_now(self, request: HttpRequest, queryset: QuerySet[Message]) -> None:
        count = queryset.filter(status__in=(Message.Status.DEFERRED, Message.Status.QUEUED)).update(
            next_attempt_at=timezone.now()
        )
        self.message_user(
            request,
            ngettext("%d message will be retried.", "%d messages will be retried.", count) % count,
        )

    @admin.action(description=_("Cancel selected messages"), permissions=["change"])
    def cancel(self, request: HttpRequest, queryset: MessageQuerySet) -> None:
        selected = queryset.count()
        count = queryset.cancel()
        skipped = selected - count
        text = ngettext("%(count)d message cancelled.", "%(count)d messages cancelled.", count) % {
            "count": count
        }
        if skipped:
            text += " " + ngettext(
                "%(skipped)d skipped: it was being sent or already final.",
                "%(skipped)d skipped: they were being sent or already final.",
                skipped,
            ) % {"skipped": skipped}
        self.message_user(request, text, messages.WARNING if skipped else messages.SUCCESS)


@admin.register(DeliveryAttempt)
class DeliveryAttemptAdmin(PlainHelpTextAdmin):
    list_display = (
        "started_at",
        "message_id",
        "route_name",
        "outcome",
        "stage",
        "smtp_code",
        "enhanced_code",
        "reply",
        "duration",
    )
    list_filter = ("outcome", "route_name", "stage")
    search_fields = ("reply", "message__subject", "recipients")
    list_select_related = ("message",)
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
