"""The queue in the admin: every message, its recipients and every attempt.

The workers own these rows (status, lease, next attempt): a form that saved a
copy loaded before would undo what a worker wrote meanwhile. So every page
here is read-only, and state changes go through actions, each one guarded
``UPDATE`` of the queryset.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Exists, OuterRef, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from ..models import DeliveryAttempt, Message, Recipient
from ..models.messages import MessageQuerySet
from . import message_actions
from .base import PlainHelpTextAdmin
from .filters import (
    AttemptDkimKeyFilter,
    AttemptRouteFilter,
    AttemptStageFilter,
    MessageAgeFilter,
    MessageRecipientDomainFilter,
    MessageRouteFilter,
    SenderDomainFilter,
)
from .message_body import eml_response, may_see_body, preview, raw_of
from .message_inlines import AttemptInline, RecipientInline
from .message_timeline import timeline
from .paginator import HistoryPaginator
from .queue_badges import (
    attempt_outcome_cell,
    duration_text,
    help_line,
    short_time,
    state_badge,
    wrapped,
)
from .recipient_search import recipient_condition
from .submission import SubmissionAccountFilter

WRAPPED_PRE = '<pre style="white-space:pre-wrap;overflow-wrap:anywhere">{}</pre>'


@admin.register(Message)
class MessageAdmin(PlainHelpTextAdmin):
    change_form_template = "admin/django_smtprelay/message/change_form.html"
    # Few, narrow columns, so the whole last error fits beside them at 1280 px:
    # the sender shows under the subject, the next attempt under a waiting
    # state, and priority is a filter.
    list_display = (
        "subject_link",
        "status_badge",
        "tries",
        "created",
        "last_error_wrapped",
    )
    list_display_links = ("subject_link",)
    list_filter = (
        "status",
        MessageAgeFilter,
        MessageRouteFilter,
        MessageRecipientDomainFilter,
        "priority",
        SenderDomainFilter,
        SubmissionAccountFilter,
    )
    search_fields = ("subject", "from_email", "message_id", "recipients__address")
    search_help_text = _(
        "Subject, sender or Message-ID; a recipient's whole address, or @domain for "
        "every recipient at a domain."
    )
    # No date_hierarchy: its links come from a DISTINCT over every matching
    # message (a scan of the whole history); the age filter covers the windows.
    inlines = (RecipientInline, AttemptInline)
    actions = ("retry_now", "send_again_failed", "send_again_all", "cancel")
    list_per_page = 50
    # Counts that stop at a cap, or PostgreSQL's estimate unfiltered: a page of
    # a million messages costs what a page of ten thousand does (paginator.py).
    paginator = HistoryPaginator
    show_full_result_count = False
    envelope_fields = (
        "status_badge",
        "last_error_wrapped",
        "subject",
        "from_email",
        "sender_domain",
        "priority",
        "message_id",
        "size",
        "route_hint",
        "submission_account",
        "created_at",
        "next_attempt_at",
        "expires_at",
        "deliver_by",
        "sent_at",
        "attempt_count",
        "possible_duplicate",
    )

    def get_readonly_fields(self, request: HttpRequest, obj: Message | None = None) -> tuple:
        if may_see_body(request):
            return (*self.envelope_fields, "headers")
        return self.envelope_fields

    def get_fields(self, request: HttpRequest, obj: Message | None = None) -> tuple:
        return self.get_readonly_fields(request, obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Message | None = None) -> bool:
        # A message's page is read-only (a POST to it is refused, nothing is
        # written); the model-level permission still grants the actions.
        if obj is not None:
            return False
        return super().has_change_permission(request)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        # "@domain" or one address: an index range of the recipients, not a
        # scan of every subject and address (recipient_search.py).
        condition = recipient_condition(search_term)
        if condition is not None:
            to = Recipient.objects.filter(condition, message=OuterRef("pk"))
            return queryset.filter(Exists(to)), False
        return super().get_search_results(request, queryset, search_term)

    @admin.display(description=_("status"), ordering="status")
    def status_badge(self, obj: Message) -> str:
        badge = state_badge(obj.status, obj.get_status_display())
        if obj.status not in (Message.Status.QUEUED, Message.Status.DEFERRED):
            return badge
        return format_html(
            '{}<div class="help" style="white-space:nowrap">{} {}</div>',
            badge,
            _("next"),
            short_time(obj.next_attempt_at),
        )

    @admin.display(description=_("subject, sender"), ordering="subject")
    def subject_link(self, obj: Message) -> str:
        return format_html("{}{}", obj.subject or _("(no subject)"), help_line(obj.from_email))

    @admin.display(description=_("tries"), ordering="attempt_count")
    def tries(self, obj: Message) -> int:
        return obj.attempt_count

    @admin.display(description=_("created"), ordering="created_at")
    def created(self, obj: Message) -> str:
        return short_time(obj.created_at)

    @admin.display(description=_("last error"))
    def last_error_wrapped(self, obj: Message) -> str:
        return wrapped(obj.last_error)

    @admin.display(description=_("headers"))
    def headers(self, obj: Message) -> str:
        raw = raw_of(obj)
        if raw is None:
            return "-"
        head = raw.split(b"\r\n\r\n", 1)[0]
        return format_html(WRAPPED_PRE, preview(head + b"\r\n\r\n").headers)

    def get_urls(self) -> list[URLPattern]:
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "<path:object_id>/eml/",
                self.admin_site.admin_view(self.eml_view),
                name="{}_{}_eml".format(*info),
            ),
            *super().get_urls(),
        ]

    def eml_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The message exactly as it is sent, as a ``.eml`` file."""
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            raise Http404(_("No message with the id %(id)r.") % {"id": object_id})
        if not (self.has_view_permission(request, obj) and may_see_body(request)):
            raise PermissionDenied
        raw = raw_of(obj)
        if raw is None:
            raise Http404(_("Message %(id)s has no stored content.") % {"id": obj.pk})
        return eml_response(obj, raw)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        obj = self.get_object(request, unquote(object_id))
        extra_context = {**(extra_context or {})}
        if obj is not None:
            extra_context.update(
                title=str(obj),
                subtitle=None,  # the title is the subject; a second line would repeat it
                timeline=timeline(obj),
                may_see_body=may_see_body(request),
            )
            raw = raw_of(obj) if extra_context["may_see_body"] else None
            if raw is not None:
                extra_context.update(
                    preview=preview(raw),
                    eml_url=reverse(
                        f"admin:{self.opts.app_label}_{self.opts.model_name}_eml",
                        args=[obj.pk],
                    ),
                )
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.action(description=_("Retry selected messages now"), permissions=["change"])
    def retry_now(self, request: HttpRequest, queryset: QuerySet[Message]) -> None:
        message_actions.retry_now(self, request, queryset)

    @admin.action(description=_("Send again to the failed recipients…"), permissions=["change"])
    def send_again_failed(self, request: HttpRequest, queryset: QuerySet[Message]) -> Any:
        return message_actions.send_again_failed(self, request, queryset)

    @admin.action(description=_("Send again to all recipients…"), permissions=["change"])
    def send_again_all(self, request: HttpRequest, queryset: QuerySet[Message]) -> Any:
        return message_actions.send_again_all(self, request, queryset)

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
    # As in the other lists: secondary facts under the main ones, the reply whole.
    list_display = (
        "started",
        "message_link",
        "outcome_cell",
        "code",
        "reply_wrapped",
    )
    # Route names and stages are offered without a DISTINCT over every attempt.
    list_filter = ("outcome", AttemptRouteFilter, AttemptStageFilter, AttemptDkimKeyFilter)
    search_fields = ("reply", "message__subject", "recipients")
    list_select_related = ("message",)
    # Newest first along the primary key (ids follow the time attempts are
    # written), not a sort of every attempt by started_at, which has no index
    # (one more per attempt written); the column still sorts on a click.
    ordering = ("-pk",)
    paginator = HistoryPaginator
    show_full_result_count = False

    @admin.display(description=_("started, took"), ordering="started_at")
    def started(self, obj: DeliveryAttempt) -> str:
        took = duration_text(obj.duration.total_seconds())
        return format_html("{}{}", short_time(obj.started_at), help_line(took))

    @admin.display(description=_("message"), ordering="message_id")
    def message_link(self, obj: DeliveryAttempt) -> str:
        url = reverse("admin:django_smtprelay_message_change", args=[obj.message_id])
        return format_html('<a href="{}">{}</a>', url, obj.message.subject or _("(no subject)"))

    @admin.display(description=_("route, outcome"), ordering="route_name")
    def outcome_cell(self, obj: DeliveryAttempt) -> str:
        return attempt_outcome_cell(obj)

    @admin.display(description=_("code"), ordering="smtp_code")
    def code(self, obj: DeliveryAttempt) -> str:
        text = " ".join(str(c) for c in (obj.smtp_code, obj.enhanced_code) if c)
        return format_html('<span style="white-space:nowrap">{}</span>', text) if text else "-"

    @admin.display(description=_("reply"))
    def reply_wrapped(self, obj: DeliveryAttempt) -> str:
        text = obj.reply or (f"({obj.exception})" if obj.exception else "")
        return wrapped(text)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
