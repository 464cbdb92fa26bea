from django.contrib import admin

from ..models import Suppression
from .base import PlainHelpTextAdmin


@admin.register(Suppression)
class SuppressionAdmin(PlainHelpTextAdmin):
    list_display = ("address", "source", "reason", "created_at")
    list_filter = ("source",)
    search_fields = ("address", "reason")
    date_hierarchy = "created_at"
