"""Routes in the admin: the password is write-only and never rendered back."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, path
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from ..models import DeliveryAttempt, Route
from .base import PlainHelpTextAdmin
from .queue_badges import help_line
from .route_tools import tool_view


class RouteForm(forms.ModelForm):
    password = forms.CharField(
        label=_("Password"),
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=_(
            "Stored encrypted and never shown. Leave blank to keep the current one; "
            "a change of server or security asks for it again."
        ),
    )
    clear_password = forms.BooleanField(label=_("Remove the stored password"), required=False)
    dkim_private_key = forms.CharField(
        label=_("DKIM private key (PEM)"),
        required=False,
        strip=True,
        widget=forms.Textarea(attrs={"rows": 3, "autocomplete": "off"}),
        help_text=_(
            "Only to compare with the published key. Stored encrypted and never shown; "
            "leave blank to keep the current one."
        ),
    )
    clear_dkim_private_key = forms.BooleanField(
        label=_("Remove the stored DKIM key"), required=False
    )

    class Meta:
        model = Route
        # The ciphertext field is editable=False, so it never reaches the form;
        # the admin's fieldsets choose what is shown.
        fields = "__all__"  # noqa: DJ007

    def clean_dkim_private_key(self) -> str:
        pem = self.cleaned_data.get("dkim_private_key") or ""
        if pem:
            from cryptography.hazmat.primitives.serialization import load_pem_private_key

            try:
                load_pem_private_key(pem.encode(), password=None)
            except (ValueError, TypeError) as exc:
                raise forms.ValidationError(
                    _(
                        "Not an unencrypted PEM private key (it should start with "
                        "'-----BEGIN PRIVATE KEY-----' or '-----BEGIN RSA PRIVATE KEY-----')."
                    )
                ) from exc
        return pem

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        changed = [name for name in Route.DESTINATION_FIELDS if name in self.changed_data]
        # A blank box keeps the stored password, which must not follow a
        # destination (or transport security) it was not typed for.
        if (
            changed
            and self.instance.pk
            and self.instance.has_password
            and not cleaned.get("password")
            and not cleaned.get("clear_password")
        ):
            labels = ", ".join(str(self.fields[name].label).lower() for name in changed)
            self.add_error(
                "password",
                _(
                    "The destination changed (%(fields)s): type the password again, "
                    "or clear it with \u201cRemove the stored password\u201d."
                )
                % {"fields": labels},
            )
        return cleaned

    def save(self, commit: bool = True) -> Route:
        route: Route = super().save(commit=False)
        if self.cleaned_data.get("clear_password"):
            route.password = ""
        elif self.cleaned_data.get("password"):
            route.password = self.cleaned_data["password"]
        if self.cleaned_data.get("clear_dkim_private_key"):
            route.dkim_private_key = ""
        elif self.cleaned_data.get("dkim_private_key"):
            route.dkim_private_key = self.cleaned_data["dkim_private_key"]
        if commit:
            route.save()
        return route


@admin.register(Route)
class RouteAdmin(PlainHelpTextAdmin):
    form = RouteForm
    # Secondary facts under the main ones, so the list fits 1280 px.
    list_display = (
        "name_and_kind",
        "server",
        "priority",
        "enabled",
        "password_set",
        "health_24h",
    )
    list_filter = ("enabled", "kind", "security")
    list_editable = ("priority", "enabled")
    search_fields = ("name", "host")
    readonly_fields = ("created_at", "updated_at")
    actions = ("enable_routes", "disable_routes")
    change_form_template = "admin/django_smtprelay/route/change_form.html"
    fieldsets = (
        (None, {"fields": ("name", "kind", "enabled", "priority")}),
        (
            _("Server"),
            {"fields": ("host", "port", "security", "verify_certificate", "timeout")},
        ),
        (
            _("Authentication"),
            {"fields": ("username", "password", "clear_password", "allow_plaintext_auth")},
        ),
        (
            _("Which messages"),
            {
                "fields": (
                    "sender_domains",
                    "recipient_domains",
                    "tags",
                    "weight",
                    "max_message_size",
                )
            },
        ),
        (
            _("Pace"),
            {"fields": ("max_per_second", "max_per_minute", "max_per_hour", "max_connections")},
        ),
        (
            _("Sending identity (for the domain checks)"),
            {
                "fields": (
                    "sending_ips",
                    "spf_include",
                    "return_path_domain",
                    "dkim_domain",
                    "dkim_selector",
                    "dkim_private_key",
                    "clear_dkim_private_key",
                )
            },
        ),
        (_("History"), {"fields": ("created_at", "updated_at")}),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Route]:
        since = timezone.now() - timedelta(hours=24)
        recent = Q(deliveryattempt__started_at__gte=since)
        return (
            super()
            .get_queryset(request)
            .annotate(
                attempts_24h=Count("deliveryattempt", filter=recent),
                faults_24h=Count(
                    "deliveryattempt",
                    filter=recent & Q(deliveryattempt__outcome=DeliveryAttempt.Outcome.ROUTE_FAULT),
                ),
            )
        )

    def get_urls(self) -> list[URLPattern]:
        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path(
                "<path:object_id>/test-connection/",
                self.admin_site.admin_view(self.connection_test_view),
                name=f"{prefix}_test_connection",
            ),
            path(
                "<path:object_id>/send-test-message/",
                self.admin_site.admin_view(self.message_test_view),
                name=f"{prefix}_send_test_message",
            ),
            *super().get_urls(),
        ]

    def connection_test_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return tool_view(self, request, object_id, "connection")

    def message_test_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return tool_view(self, request, object_id, "message")

    @admin.display(boolean=True, description=_("password"))
    def password_set(self, obj: Route) -> bool:
        return obj.has_password

    @admin.display(description=_("name, kind"), ordering="name")
    def name_and_kind(self, obj: Route) -> str:
        return format_html("{}{}", obj.name, help_line(obj.get_kind_display()))

    @admin.display(description=_("server, security"), ordering="host")
    def server(self, obj: Route) -> str:
        if not obj.host:
            return "-"
        return format_html(
            '<span style="white-space:nowrap">{}:{}</span>{}',
            obj.host,
            obj.port,
            help_line(obj.get_security_display()),
        )

    @admin.display(description=_("last 24 h"))
    def health_24h(self, obj: Any) -> str:
        if not obj.attempts_24h:
            return "-"
        ok = obj.attempts_24h - obj.faults_24h
        return f"{ok}/{obj.attempts_24h} ok ({100 * ok // obj.attempts_24h}%)"

    @admin.action(description=_("Enable selected routes"), permissions=["change"])
    def enable_routes(self, request: HttpRequest, queryset: QuerySet[Route]) -> None:
        count = queryset.update(enabled=True)
        self.message_user(
            request,
            ngettext("%(count)d route enabled.", "%(count)d routes enabled.", count)
            % {"count": count},
        )

    @admin.action(description=_("Disable selected routes"), permissions=["change"])
    def disable_routes(self, request: HttpRequest, queryset: QuerySet[Route]) -> None:
        count = queryset.update(enabled=False)
        self.message_user(
            request,
            ngettext("%(count)d route disabled.", "%(count)d routes disabled.", count)
            % {"count": count},
        )
