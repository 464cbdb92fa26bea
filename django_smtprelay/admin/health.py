"""Route health in the admin: every route's circuit and why, score and why, rate limits.

The list is every route (see :mod:`django_smtprelay.health.overview`), not
only those with a ``RouteHealth`` row, read from the cache and the rows and
never written on a page view. The rows are written by the workers; here they
are only read, except for the "close circuit now" action for an operator
who knows the relay is back.
"""

from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from ..health.circuit import close_now
from ..health.destination_overview import destination_overview
from ..health.overview import cache_is_per_process, route_overview
from ..models import RouteHealth
from .base import PlainHelpTextAdmin

BADGE_COLOURS = {
    RouteHealth.State.CLOSED: "#2e7d32",
    RouteHealth.State.HALF_OPEN: "#ef6c00",
    RouteHealth.State.OPEN: "#c62828",
}


@admin.register(RouteHealth)
class RouteHealthAdmin(PlainHelpTextAdmin):
    list_display = (
        "route_name",
        "state_badge",
        "reason",
        "open_until",
        "score",
        "score_reason",
        "throttled_until",
        "updated_at",
    )
    list_filter = ("state",)
    search_fields = ("route_name", "reason", "score_reason")
    actions = ("close_circuits",)
    fields = (
        "route_name",
        "state",
        "reason",
        "opened_at",
        "open_until",
        "consecutive_faults",
        "score",
        "score_reason",
        "throttled_until",
        "throttle_reason",
        "updated_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, object] | None = None
    ) -> HttpResponse:
        """Every route's health; a POST is an action on rows (close circuit now)."""
        if request.method == "POST":
            return super().changelist_view(request, extra_context)
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("Route health"),
            "rows": [
                (o, RouteHealth.State(o.state).label, BADGE_COLOURS.get(o.state, "#555"))
                for o in route_overview()
            ],
            "destinations": destination_overview(),
            "can_close": self.has_change_permission(request),
            "per_process_cache": cache_is_per_process(),
            **(extra_context or {}),
        }
        return TemplateResponse(
            request, "admin/django_smtprelay/routehealth/overview.html", context
        )

    @admin.display(description=_("circuit"), ordering="state")
    def state_badge(self, obj: RouteHealth) -> str:
        return format_html(
            '<span style="color:#fff;background:{};padding:1px 6px;border-radius:3px">{}</span>',
            BADGE_COLOURS.get(obj.state, "#555"),
            obj.get_state_display(),
        )

    @admin.action(description=_("Close circuit now"), permissions=["change"])
    def close_circuits(self, request: HttpRequest, queryset: QuerySet[RouteHealth]) -> None:
        names = list(queryset.values_list("route_name", flat=True))
        reason = f"closed in the admin by {request.user.get_username()}"
        count = close_now(names, reason, timezone.now())
        self.message_user(
            request,
            ngettext("%(count)d circuit closed.", "%(count)d circuits closed.", count)
            % {"count": count},
        )
