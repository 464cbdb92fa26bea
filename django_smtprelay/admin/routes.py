"""Routes in the admin: the password is write-only and never rendered back."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, path
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from ..models import DeliveryAttempt, Route
from .base import PlainHelpTextAdmin
from .route_tools import tool_view
from .route_webhooks import webhook_panel


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
    webhook_secret = forms.CharField(
        label=_("Webhook basic auth (user:password)"),
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=_(
            "The credentials the ESP posts its events with, put in the webhook URL as "
            "https://user:password@... Stored encrypted and never shown; leave blank to keep "
            "the current one. A changed route name or ESP asks for it again."
        ),
    )
    clear_webhook_secret = forms.BooleanField(
        label=_("Remove the stored webhook credentials"), required=False
    )
    webhook_signing_key = forms.CharField(
        label=_("Webhook signing key"),
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text=_(
            "For ESPs that sign their posts (Mailgun, Postal, MailerSend): the key from the "
            "ESP's console. Stored encrypted and never shown; leave blank to keep it."
        ),
    )
    clear_webhook_signing_key = forms.BooleanField(
        label=_("Remove the stored signing key"), required=False
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

    def clean_webhook_secret(self) -> str:
        secret = self.cleaned_data.get("webhook_secret") or ""
        if secret and (":" not in secret or secret.startswith(":") or secret.endswith(":")):
            raise forms.ValidationError(
                _("Type the basic-auth credentials as user:password (both parts, one colon).")
            )
        return secret

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        self._check_webhook_secrets(cleaned)
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

    def _check_webhook_secrets(self, cleaned: dict[str, Any]) -> None:
        """Stored webhook credentials do not follow a renamed route (a new URL) or a new ESP."""
        moved = [name for name in ("name", "esp") if name in self.changed_data]
        if not (moved and self.instance.pk):
            return
        for field, stored in (
            ("webhook_secret", self.instance.webhook_secret_ciphertext),
            ("webhook_signing_key", self.instance.webhook_signing_key_ciphertext),
        ):
            if stored and not cleaned.get(field) and not cleaned.get(f"clear_{field}"):
                self.add_error(
                    field,
                    _("The webhook changed (%(fields)s): type this again, or remove it.")
                    % {"fields": ", ".join(str(self.fields[n].label).lower() for n in moved)},
                )

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
        # Sealed to the route's name and ESP as saved: set after the fields above.
        for field in ("webhook_secret", "webhook_signing_key"):
            if self.cleaned_data.get(f"clear_{field}"):
                setattr(route, field, "")
            elif self.cleaned_data.get(field):
                setattr(route, field, self.cleaned_data[field])
            elif self.instance.pk and any(n in self.changed_data for n in ("name", "esp")):
                # Only reached when cleared above (clean refuses otherwise).
                setattr(route, field, "")
        if commit:
            route.save()
        return route


@admin.register(Route)
class RouteAdmin(PlainHelpTextAdmin):
    form = RouteForm
    list_display = (
        "name",
        "kind",
        "host",
        "port",
        "security",
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
        (
            _("ESP and its webhooks (after the relay said yes)"),
            {
                "fields": (
                    "esp",
                    "webhook_secret",
                    "clear_webhook_secret",
                    "webhook_signing_key",
                    "clear_webhook_signing_key",
                ),
                "description": _(
                    "The ESP posts its events (delivered, bounced, complained, ...) to the "
                    "URLs shown below the form once the route is saved."
                ),
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

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        route = self.get_object(request, unquote(object_id))
        extra_context = {**(extra_context or {})}
        if route is not None and route.esp:
            extra_context["webhooks"] = webhook_panel(request, route)
        return super().change_view(request, object_id, form_url, extra_context)

    def connection_test_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return tool_view(self, request, object_id, "connection")

    def message_test_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return tool_view(self, request, object_id, "message")

    @admin.display(boolean=True, description=_("password"))
    def password_set(self, obj: Route) -> bool:
        return obj.has_password

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
