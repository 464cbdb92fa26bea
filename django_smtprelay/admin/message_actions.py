"""What an operator does to messages: retry now, send again; each says what it did and why not.

Every change is one guarded ``UPDATE`` (the status it expects is in the
``WHERE``), so a message a worker claimed meanwhile is left alone; what was
changed is published for delivery at once, after the commit.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from django import forms
from django.contrib import messages
from django.contrib.admin import ModelAdmin, helpers
from django.db import transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from ..backends import publish
from ..conf import app_settings
from ..models import Message, MessageContent, Recipient, Route

S = Message.Status
NOTHING_FAILED = "nothing_failed"
PURGED = "purged"

# Why a message was skipped, by its state, in the words the operator reads.
SKIP_REASONS = {
    S.SENT: lambda n: ngettext("%(n)d already sent", "%(n)d already sent", n),
    S.FAILED: lambda n: ngettext(
        '%(n)d failed (use "send again")', '%(n)d failed (use "send again")', n
    ),
    S.CANCELLED: lambda n: ngettext(
        '%(n)d cancelled (use "send again")', '%(n)d cancelled (use "send again")', n
    ),
    S.SENDING: lambda n: ngettext("%(n)d being sent", "%(n)d being sent", n),
    S.QUEUED: lambda n: ngettext("%(n)d still queued", "%(n)d still queued", n),
    S.DEFERRED: lambda n: ngettext("%(n)d still deferred", "%(n)d still deferred", n),
    NOTHING_FAILED: lambda n: ngettext(
        "%(n)d with no failed or cancelled recipient",
        "%(n)d with no failed or cancelled recipient",
        n,
    ),
    PURGED: lambda n: ngettext(
        "%(n)d whose content was deleted by retention (RETENTION_DAYS)",
        "%(n)d whose content was deleted by retention (RETENTION_DAYS)",
        n,
    ),
}


def skipped_text(states: Iterable[str]) -> str:
    """ "3 skipped: 1 already sent, 2 being sent." — or "" when none was skipped."""
    counts = Counter(states)
    total = sum(counts.values())
    if not total:
        return ""
    reasons = ", ".join(
        SKIP_REASONS[state](n) % {"n": n} for state, n in sorted(counts.items()) if n
    )
    return ngettext("%(total)d skipped: %(reasons)s.", "%(total)d skipped: %(reasons)s.", total) % {
        "total": total,
        "reasons": reasons,
    }


def _report(model_admin: ModelAdmin, request: HttpRequest, done: str, skipped: str) -> None:
    level = messages.WARNING if skipped else messages.SUCCESS
    model_admin.message_user(request, f"{done} {skipped}".strip(), level)


def _publish_after_commit(ids: list[int]) -> None:
    if ids:
        transaction.on_commit(lambda: publish(ids))


def retry_now(model_admin: ModelAdmin, request: HttpRequest, queryset: QuerySet[Message]) -> None:
    """Make queued and deferred messages due now and publish their delivery at once."""
    waiting = (S.QUEUED, S.DEFERRED)
    with transaction.atomic():
        selected = dict(queryset.values_list("pk", "status"))
        ids = [pk for pk, status in selected.items() if status in waiting]
        Message.objects.filter(pk__in=ids, status__in=waiting).update(
            next_attempt_at=timezone.now()
        )
        # Read back: a worker may have claimed one between the read and the update.
        retried = list(
            Message.objects.filter(pk__in=ids, status__in=waiting).values_list("pk", flat=True)
        )
        _publish_after_commit(retried)
    others = [selected[pk] for pk in selected if pk not in set(retried)]
    others = [S.SENDING if status in waiting else status for status in others]
    done = ngettext(
        "%(count)d message is being sent now.",
        "%(count)d messages are being sent now.",
        len(retried),
    ) % {"count": len(retried)}
    _report(model_admin, request, done, skipped_text(others))


class SendAgainForm(forms.Form):
    route = forms.ModelChoiceField(
        queryset=Route.objects.filter(enabled=True).order_by("priority", "name"),
        required=False,
        empty_label=gettext_lazy("Any route, as usual"),
        label=gettext_lazy("Through route"),
        help_text=gettext_lazy("Send only through this route (enabled routes only)."),
    )


def requeue(
    queryset: QuerySet[Message], *, only_failed: bool, route: Route | None
) -> tuple[list[int], list[str]]:
    """Put failed and cancelled messages back in the queue; return (requeued ids, skipped states).

    Their recipients go back to pending (all of them, or with ``only_failed``
    the failed and cancelled ones, which sent messages may have too), the
    attempts stay as history, and the message gets a whole new lifetime from now.
    """
    final_bad = (S.FAILED, S.CANCELLED)
    open_again = (
        (Recipient.Status.FAILED, Recipient.Status.CANCELLED)
        if only_failed
        else tuple(Recipient.Status.values)
    )
    now = timezone.now()
    with transaction.atomic():
        # Only the failed recipients: a sent message may have some too.
        requeueable = (*final_bad, S.SENT) if only_failed else final_bad
        selected = dict(queryset.values_list("pk", "status"))
        candidates = [pk for pk, status in selected.items() if status in requeueable]
        # Locked where the database can, so neither a worker's claim, another
        # operator's "send again" nor the retention purge changes them between
        # these reads and the writes below (which are guarded besides).
        candidates = list(
            Message.objects.filter(pk__in=candidates, status__in=requeueable)
            .select_for_update()
            .values_list("pk", flat=True)
        )
        with_rcpts = set(
            Recipient.objects.filter(message_id__in=candidates, status__in=open_again).values_list(
                "message_id", flat=True
            )
        )
        # Retention may have deleted a finished message's bytes: nothing to send again.
        has_content = Exists(MessageContent.objects.filter(message_id=OuterRef("pk")))
        with_content = set(
            MessageContent.objects.filter(message_id__in=with_rcpts).values_list(
                "message_id", flat=True
            )
        )
        values = {
            "status": S.QUEUED,
            "next_attempt_at": now,
            "expires_at": now + app_settings.max_lifetime,
            "deliver_by": None,  # sent again on purpose: an old expiry no longer holds
            "attempt_count": 0,
            "last_error": "",
            "retry_route": "",
            "lease_token": None,
            "lease_expires_at": None,
        }
        if route is not None:
            values["route_hint"] = route.name
        Message.objects.filter(
            has_content, pk__in=sorted(with_content), status__in=requeueable
        ).update(**values)
        # What the guarded UPDATE changed: queued, due at this very moment.
        won = list(
            Message.objects.filter(
                pk__in=sorted(with_content), status=S.QUEUED, next_attempt_at=now
            ).values_list("pk", flat=True)
        )
        Recipient.objects.filter(message_id__in=won, status__in=open_again).update(
            status=Recipient.Status.PENDING,
            smtp_code=None,
            enhanced_code="",
            reply="",
            route=None,
            updated_at=now,
        )
        _publish_after_commit(won)
    skipped = []
    for pk, status in selected.items():
        if pk in won:
            continue
        if pk in with_rcpts and pk not in with_content:
            skipped.append(PURGED)
        else:
            skipped.append(NOTHING_FAILED if status in requeueable else status)
    return won, skipped


def _send_again(
    model_admin: ModelAdmin, request: HttpRequest, queryset: QuerySet[Message], *, only_failed: bool
) -> TemplateResponse | None:
    """An intermediate page (with a route choice), then the requeue."""
    form = SendAgainForm(request.POST if "confirm" in request.POST else None)
    if form.is_bound and form.is_valid():
        won, skipped = requeue(queryset, only_failed=only_failed, route=form.cleaned_data["route"])
        text = skipped_text(skipped)
        done = ngettext(
            "%(count)d message queued to be sent again.",
            "%(count)d messages queued to be sent again.",
            len(won),
        ) % {"count": len(won)}
        route = form.cleaned_data["route"]
        if route is not None and won:
            done = done[:-1] + " " + _("through %(route)s.") % {"route": route.name}
        _report(model_admin, request, done, text)
        return None
    opts = model_admin.model._meta
    context = {
        **model_admin.admin_site.each_context(request),
        "title": _("Send again to all recipients")
        if not only_failed
        else _("Send again to the failed recipients"),
        "opts": opts,
        "form": form,
        "queryset": queryset[:100],
        "count": queryset.count(),
        "only_failed": only_failed,
        "action": request.POST.get("action", ""),
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
        "select_across": request.POST.get("select_across", "0"),
        "query_string": request.GET.urlencode(),
    }
    return TemplateResponse(request, "admin/django_smtprelay/message/send_again.html", context)


def send_again_all(
    model_admin: ModelAdmin, request: HttpRequest, queryset: QuerySet[Message]
) -> TemplateResponse | None:
    return _send_again(model_admin, request, queryset, only_failed=False)


def send_again_failed(
    model_admin: ModelAdmin, request: HttpRequest, queryset: QuerySet[Message]
) -> TemplateResponse | None:
    return _send_again(model_admin, request, queryset, only_failed=True)
