"""``{% smtprelay_dashboard %}``: the dashboard on the app's admin index page.

Why a template tag and not a view: Django's admin serves the app index
(``/admin/django_smtprelay/``) from ``AdminSite.app_index`` and looks for the
template ``admin/<app_label>/app_index.html`` first. A ``ModelAdmin``'s
``get_urls`` cannot claim that URL (its URLs live under ``<app>/<model>/``),
and replacing the site or adding a URL ahead of the admin's would reach into
the project's configuration. Overriding the app's own template keeps the
admin site, its URL, its login and its permission checks (a user without any
permission on the app's models gets Django's 404, as before), works on
whichever admin site the models are registered with, and keeps the model
list below the dashboard.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django import template
from django.utils import timezone
from django.utils.timesince import timesince
from django.utils.translation import gettext

register = template.Library()

# Who sees the dashboard: it shows what the queue holds and how it went.
PERMISSION = "django_smtprelay.view_message"


@register.inclusion_tag("admin/django_smtprelay/dashboard.html", takes_context=True)
def smtprelay_dashboard(context: template.Context) -> dict[str, Any]:
    """The dashboard for a user who may view messages; nothing for others."""
    request = context.get("request")
    if request is None or not request.user.has_perm(PERMISSION):
        return {"dashboard": None}
    # Imported here: Django imports every app's template tag libraries when a
    # template engine starts, and the admin package registers ModelAdmins,
    # which needs django.contrib.admin; a site (or a worker) without the admin
    # must still be able to render templates.
    from ..admin.dashboard import build_dashboard

    return {"dashboard": build_dashboard()}


@register.filter
def smtprelay_age(age: timedelta) -> str:
    """A short age: ``45 s``, ``12 min``, ``3 h 5 min``, ``2 d 4 h``."""
    seconds = max(int(age.total_seconds()), 0)
    if seconds < 60:
        return f"{seconds} s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if minutes < 60:
        return f"{minutes} min"
    if hours < 24:
        return f"{hours} h {minutes % 60} min"
    return f"{days} d {hours % 24} h"


@register.filter
def smtprelay_ago(moment: datetime | None) -> str:
    """``3 hours, 5 minutes ago``; ``under a minute ago`` where Django would say ``0 minutes``."""
    if moment is None:
        return ""
    if timezone.now() - moment < timedelta(minutes=1):
        return gettext("under a minute ago")
    return gettext("%(time)s ago") % {"time": timesince(moment)}


@register.filter
def smtprelay_seconds(seconds: float) -> str:
    """A latency: ``850 ms`` below a second, ``2.4 s`` above."""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.1f} s"
