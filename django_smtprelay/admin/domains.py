"""Admin for sending domains: status badges, the findings with their fixes, check now."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.timesince import timesince
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from ..domains.refresh import check_and_save
from ..domains.resolver import Resolver, clear_cache
from ..models import SenderDomain
from .base import PlainHelpTextAdmin
from .domain_keys import DomainKeysMixin, keys_context

BADGE_COLOURS = {
    "ok": "#2e7d32",
    "warning": "#ef6c00",
    "failing": "#c62828",
    "unknown": "#6d4c41",
    "unchecked": "#757575",
    "none": "#9e9e9e",
}


def badge(status: str, label: str = "") -> str:
    colour = BADGE_COLOURS.get(status, "#757575")
    return format_html(
        '<span class="smtprelay-badge" style="background:{};color:#fff;padding:1px 6px;'
        'border-radius:8px;font-size:11px;white-space:nowrap">{}</span>',
        colour,
        label or status,
    )


# A checklist item's status (domains/providers.py) as the badge it reads as.
CHECKLIST_BADGES = {
    "met": ("ok", _("Met")),
    "not_met": ("failing", _("Not met")),
    "unknown": ("unknown", _("Unknown")),
    "manual": ("none", _("Check by hand")),
}


def checklist_rows(checklist: list[dict[str, str]]) -> list[dict[str, Any]]:
    """The providers' checklist with each status as a labelled badge, not its key."""
    rows = []
    for item in checklist:
        status = item.get("status", "")
        colour, label = CHECKLIST_BADGES.get(status, ("unchecked", status))
        rows.append({**item, "badge": badge(colour, str(label))})
    return rows


@admin.register(SenderDomain)
class SenderDomainAdmin(DomainKeysMixin, PlainHelpTextAdmin):
    change_form_template = "admin/django_smtprelay/senderdomain/change_form.html"
    list_display = (
        "domain",
        "verdict_badge",
        "spf_badge",
        "dmarc_badge",
        "dkim_badge",
        "mx_badge",
        "bimi_badge",
        "checked",
    )
    list_filter = ("verdict",)
    search_fields = ("domain",)
    readonly_fields = ("verdict", "checked_at", "check_duration", "created_at")
    fields = ("domain", "dkim_selectors", *readonly_fields)
    actions = ("check_now",)

    @admin.display(description=_("checked"), ordering="checked_at")
    def checked(self, obj: SenderDomain) -> str:
        """How long ago (the exact time on hover): words wrap, so the row fits 1280 px."""
        if not obj.checked_at:
            return "-"
        return format_html(
            '<span title="{}">{}</span>',
            timezone.localtime(obj.checked_at).isoformat(timespec="seconds"),
            _("%(time)s ago") % {"time": timesince(obj.checked_at, depth=1)},
        )

    @admin.display(description=_("verdict"), ordering="verdict")
    def verdict_badge(self, obj: SenderDomain) -> str:
        return badge(obj.verdict, obj.get_verdict_display())

    def _area(self, obj: SenderDomain, area: str) -> str:
        if not obj.checked_at:
            return "-"
        return badge(obj.areas.get(area, "none"))

    @admin.display(description="SPF")
    def spf_badge(self, obj: SenderDomain) -> str:
        return self._area(obj, "spf")

    @admin.display(description="DMARC")
    def dmarc_badge(self, obj: SenderDomain) -> str:
        return self._area(obj, "dmarc")

    @admin.display(description="DKIM")
    def dkim_badge(self, obj: SenderDomain) -> str:
        return self._area(obj, "dkim")

    @admin.display(description="MX")
    def mx_badge(self, obj: SenderDomain) -> str:
        return self._area(obj, "mx")

    @admin.display(description="BIMI")
    def bimi_badge(self, obj: SenderDomain) -> str:
        return self._area(obj, "bimi")

    @admin.action(description=_("Check DNS now"), permissions=["change"])
    def check_now(self, request: HttpRequest, queryset: QuerySet[SenderDomain]) -> None:
        clear_cache()
        resolver = Resolver()
        failing = 0
        for sender_domain in queryset:
            failing += check_and_save(sender_domain, resolver=resolver).failing
        count = len(queryset)
        self.message_user(
            request,
            ngettext("%(count)d domain checked", "%(count)d domains checked", count)
            % {"count": count}
            + (
                ngettext("; %(failing)d is failing.", "; %(failing)d are failing.", failing)
                % {"failing": failing}
                if failing
                else "."
            ),
            messages.WARNING if failing else messages.SUCCESS,
        )

    def get_urls(self) -> list[URLPattern]:
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "<path:object_id>/check/",
                self.admin_site.admin_view(self.check_view),
                name="{}_{}_check".format(*info),
            ),
            *self.key_urls(),
            *super().get_urls(),
        ]

    def check_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST: check one domain now and come back to its page."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        # get_object() answers None for an id that is malformed or unknown alike.
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            raise Http404(_("No sending domain with the id %(id)r.") % {"id": object_id})
        if not self.has_change_permission(request, obj):
            raise PermissionDenied
        clear_cache()
        report = check_and_save(obj)
        self.message_user(
            request,
            _("Checked %(domain)s: %(verdict)s.")
            % {"domain": obj.domain, "verdict": obj.get_verdict_display()},
            messages.WARNING if report.failing else messages.SUCCESS,
        )
        info = self.opts.app_label, self.opts.model_name
        return HttpResponseRedirect(reverse("admin:{}_{}_change".format(*info), args=[obj.pk]))

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        obj = self.get_object(request, object_id)
        extra_context = {**(extra_context or {})}
        if obj is not None:
            findings = sorted(
                obj.findings,
                key=lambda f: (not f.get("blocking"), f.get("area", ""), f.get("code", "")),
            )
            extra_context.update(
                domain_report={
                    "areas": [(area, badge(status)) for area, status in obj.areas.items()],
                    "records": {k: v for k, v in obj.records.items() if v},
                    "findings": findings,
                    "routes": obj.route_results,
                    "checklist": checklist_rows(obj.checklist),
                    "verdict": badge(obj.verdict, obj.get_verdict_display()),
                },
                check_url=reverse(
                    f"admin:{self.opts.app_label}_{self.opts.model_name}_check",
                    args=[obj.pk],
                ),
                dkim=keys_context(obj, f"admin:{self.opts.app_label}_{self.opts.model_name}_dkim"),
            )
        return super().change_view(request, object_id, form_url, extra_context)
