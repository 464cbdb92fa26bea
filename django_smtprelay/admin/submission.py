"""Submission accounts in the admin: the password is write-only (hashed on
save, never shown back); use, volume and rejections are the listener's."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth.password_validation import validate_password
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from ..models import Message, SubmissionAccount
from .base import PlainHelpTextAdmin
from .queue_badges import short_time


class SubmissionAccountForm(forms.ModelForm):
    # Not the model's field (which holds the hash and is not editable).
    new_password = forms.CharField(
        label=_("Password"),
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=_("Stored as a password hash, never shown; leave blank to keep the current one."),
    )

    class Meta:
        model = SubmissionAccount
        fields = (
            "name",
            "username",
            "allowed_senders",
            "route_tag",
            "max_message_size",
            "max_messages_per_minute",
            "max_messages_per_hour",
            "enabled",
        )

    def clean_new_password(self) -> str:
        password = self.cleaned_data.get("new_password") or ""
        if not password and not self.instance.has_password:
            raise forms.ValidationError(_("Type a password: the account has none yet."))
        if password:
            validate_password(password)
        return password

    def save(self, commit: bool = True) -> SubmissionAccount:
        account = super().save(commit=False)
        if self.cleaned_data.get("new_password"):
            account.set_password(self.cleaned_data["new_password"])
        if commit:
            account.save()
        return account


@admin.register(SubmissionAccount)
class SubmissionAccountAdmin(PlainHelpTextAdmin):
    form = SubmissionAccountForm
    list_display = (
        "name",
        "username",
        "enabled",
        "route_tag",
        "last_use",
        "volume",
    )
    list_filter = ("enabled",)
    search_fields = ("name", "username", "allowed_senders")
    readonly_fields = (
        "last_used_at",
        "last_client",
        "messages_accepted",
        "messages_rejected",
        "created_at",
    )

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [*SubmissionAccountForm.Meta.fields, "new_password", *self.readonly_fields]

    # Two columns of two lines each rather than five: the list fits 1280 px.
    @admin.display(description=_("last use"), ordering="last_used_at")
    def last_use(self, account: SubmissionAccount) -> str:
        if account.last_used_at is None:
            return "-"
        return format_html(
            "{}<br><small>{}</small>", short_time(account.last_used_at), account.last_client or ""
        )

    @admin.display(description=_("messages"), ordering="messages_accepted")
    def volume(self, account: SubmissionAccount) -> str:
        url = reverse("admin:django_smtprelay_message_changelist")
        return format_html(
            '<a href="{}?submission_account={}">{}</a><br><small>{}</small>',
            url,
            account.pk,
            ngettext("%(n)d accepted", "%(n)d accepted", account.messages_accepted)
            % {"n": account.messages_accepted},
            ngettext("%(n)d refused", "%(n)d refused", account.messages_rejected)
            % {"n": account.messages_rejected},
        )


class SubmissionAccountFilter(admin.SimpleListFilter):
    """Messages by the SMTP account they came in with (or the site's own)."""

    title = _("submitted by")
    parameter_name = "submission_account"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        # Read once per request: an action builds the changelist's filters twice.
        accounts = getattr(request, "_smtprelay_submission_accounts", None)
        if accounts is None:
            accounts = list(SubmissionAccount.objects.order_by("name").values_list("pk", "name"))
            request._smtprelay_submission_accounts = accounts
        if not accounts:
            return []
        return [("site", _("the site (no account)")), *((str(pk), name) for pk, name in accounts)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Message]) -> QuerySet[Message]:
        value = self.value()
        if value == "site":
            return queryset.filter(submission_account__isnull=True)
        if value and value.isdigit():
            return queryset.filter(submission_account_id=int(value))
        return queryset
