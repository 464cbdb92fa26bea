from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from ..models import Suppression
from .base import PlainHelpTextAdmin
from .queue_badges import short_time, wrapped


@admin.register(Suppression)
class SuppressionAdmin(PlainHelpTextAdmin):
    # The reason wraps anywhere and the time takes two short lines: a relay's
    # reply with an address in it otherwise pushes the list past 1280 px.
    list_display = ("address", "source", "reason_text", "created")
    list_filter = ("source",)
    search_fields = ("address", "reason")
    date_hierarchy = "created_at"

    @admin.display(description=_("reason"), ordering="reason")
    def reason_text(self, suppression: Suppression) -> str:
        return wrapped(suppression.reason)

    @admin.display(description=_("created"), ordering="created_at")
    def created(self, suppression: Suppression) -> str:
        return short_time(suppression.created_at)
