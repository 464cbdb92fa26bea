"""Routes in the admin: the password and ESP secrets are write-only, never rendered back."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.db.models import OuterRef, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, path
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from .. import esps
from ..delivery.stats import hour_of
from ..exceptions import SMTPRelayError
from ..models import DeliveryAttempt, DeliveryStat, Route
from .base import PlainHelpTextAdmin
from .queue_badges import help_line
from .route_ehlo import ehlo_panel
from .route_tools import tool_view
from .route_webhooks import webhook_panel


def _esp_choices() -> list[tuple[str, str]]:
    return [("", "---------"), *((e.name, e.label) for e in esps.available().values())]


def _esp_reference() -> str:
    """Each ESP's options, in words, for the help text: from the installed anymail."""
    lines = []
    for esp in esps.available().values():
        names = []
        for o in esp.options:
            notes = [n for n, on in (("secret", o.secret), ("required", o.required)) if on]
            names.append(f"{o.name} ({', '.join(notes)})" if notes else o.name)
        lines.append(f"{esp.label} ({esp.name}): {', '.join(names)}.")
    return " ".join(lines)


def _parse_lines(text: str, field: str) -> dict[str, object]:
    """``name = value`` lines into options; a clear error names the line."""
    import json

    options: dict[str, object] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, value = line.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name:
            raise forms.ValidationError(
                _("Line %(number)d of %(field)s is not 'name = value': %(line)r.")
                % {"number": number, "field": field, "line": line.strip()[:60]}
            )
        if value in ("true", "false", "null") or value.lstrip("-").isdigit():
            options[name] = json.loads(value)
        else:
            options[name] = value
    return options


class RouteForm(forms.ModelForm):
    esp = forms.ChoiceField(
        label=_("ESP"),
        required=False,
        choices=_esp_choices,
        help_text=_(
            "The email service provider (from the ESPs django-anymail ships). An ESP route "
            "sends through its API; an SMTP route through its SMTP endpoint says so here, "
            "so that its events are matched to the messages sent."
        ),
    )
    esp_settings_text = forms.CharField(
        label=_("ESP options"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "autocomplete": "off"}),
    )
    esp_secrets_text = forms.CharField(
        label=_("ESP secrets"),
        required=False,
        strip=True,
        widget=forms.Textarea(attrs={"rows": 2, "autocomplete": "off"}),
    )
    clear_esp_secrets = forms.BooleanField(label=_("Remove the stored ESP secrets"), required=False)
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

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        route = self.instance
        if "mx_tls" in self.fields:
            # Only direct-to-MX routes use it: a form without it keeps the default.
            self.fields["mx_tls"].required = False
        self.fields["esp_settings_text"].initial = "\n".join(
            f"{k} = {str(v).lower() if isinstance(v, bool) else v}"
            for k, v in sorted((route.esp_settings or {}).items())
        )
        self.fields["esp_settings_text"].help_text = _(
            "For an ESP route: its options, one 'name = value' a line (the API base URL, "
            "sender domain, message stream, region...). The site's global ANYMAIL settings "
            "are never used for a route. Each ESP's options: %(reference)s"
        ) % {"reference": _esp_reference()}
        stored = ", ".join(route.esp_secret_names) if route.pk else ""
        self.fields["esp_secrets_text"].help_text = _(
            "API keys and tokens, one 'name = value' a line. Stored encrypted and never "
            "shown; leave blank to keep the stored ones (%(stored)s). A change of ESP or "
            "API URL asks for them again."
        ) % {"stored": stored or _("none stored")}

    def clean_mx_tls(self) -> str:
        return self.cleaned_data.get("mx_tls") or Route.MXTLS.OPPORTUNISTIC

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

    def clean_esp_settings_text(self) -> dict[str, object]:
        return _parse_lines(self.cleaned_data.get("esp_settings_text") or "", _("ESP options"))

    def clean_esp_secrets_text(self) -> dict[str, object]:
        return _parse_lines(self.cleaned_data.get("esp_secrets_text") or "", _("ESP secrets"))

    def _clean_esp(self, cleaned: dict[str, Any]) -> None:
        """The ESP options against what the ESP takes; secrets kept only where they were typed."""
        settings_, typed = cleaned.get("esp_settings_text"), cleaned.get("esp_secrets_text")
        if settings_ is None or typed is None:
            return  # a line could not be read: its error is shown already
        esp = esps.available().get(cleaned.get("esp") or "")
        if cleaned.get("kind") != Route.Kind.ANYMAIL:
            if settings_ or typed:
                self.add_error("esp_settings_text", _("Only ESP routes take ESP options."))
            return
        if esp is None:
            self.add_error("esp", _("Choose the ESP this route sends through."))
            return
        secret = {o.name for o in esp.options if o.secret}
        for name in sorted(set(settings_) & secret):
            self.add_error(
                "esp_settings_text",
                _("%(name)s is a secret: type it in ESP secrets, where it is never shown back.")
                % {"name": name},
            )
        for name in sorted(set(typed) - secret):
            self.add_error(
                "esp_secrets_text",
                _("%(name)s is not a secret of %(esp)s (its secrets: %(secrets)s).")
                % {"name": name, "esp": esp.label, "secrets": ", ".join(sorted(secret)) or "-"},
            )
        kept = self._kept_secrets(cleaned, esp, settings_, typed)
        if kept is None:
            return
        options = {**settings_, **kept, **typed}
        unknown = sorted(set(settings_) - {o.name for o in esp.options})
        if unknown:
            self.add_error(
                "esp_settings_text",
                _("%(esp)s takes no option %(names)s; it takes: %(known)s.")
                % {
                    "esp": esp.label,
                    "names": ", ".join(unknown),
                    "known": ", ".join(o.name for o in esp.options if not o.secret),
                },
            )
        for option in esp.options:
            if option.required and options.get(option.name) in (None, ""):
                if option.secret:
                    self.add_error(
                        "esp_secrets_text",
                        _("%(esp)s needs %(name)s: type '%(name)s = ...' here.")
                        % {"esp": esp.label, "name": option.name},
                    )
                else:
                    self.add_error(
                        "esp_settings_text",
                        _("%(esp)s needs %(name)s: add '%(name)s = ...' to the ESP options.")
                        % {"esp": esp.label, "name": option.name},
                    )
        if self.has_error("esp_settings_text") or self.has_error("esp_secrets_text"):
            return
        # On the instance now, sealed to the ESP and endpoint it will have, so
        # the model's own validation reads the options as they will be saved.
        route = self.instance
        route.kind, route.esp, route.esp_settings = Route.Kind.ANYMAIL, esp.name, settings_
        route.esp_secrets = {**kept, **typed}

    def _kept_secrets(
        self, cleaned: dict[str, Any], esp: esps.ESP, settings_: dict, typed: dict
    ) -> dict[str, object] | None:
        """The stored secrets that stay (None: they cannot, and the error says why)."""
        route = self.instance
        if not route.pk or not route.esp_secrets_ciphertext or cleaned.get("clear_esp_secrets"):
            return {}
        before = route.destination
        new_destination = Route(
            kind=cleaned.get("kind"), esp=esp.name, esp_settings=settings_
        ).destination
        if before != new_destination:
            if not typed:
                self.add_error(
                    "esp_secrets_text",
                    _(
                        "The ESP or its API endpoint changed (now %(destination)s): type the "
                        "secrets again, or remove them with \u201cRemove the stored ESP "
                        "secrets\u201d."
                    )
                    % {"destination": new_destination},
                )
                return None
            return {}  # typed again: the old ones are not carried over
        try:
            return route.esp_secrets
        except SMTPRelayError as exc:
            self.add_error("esp_secrets_text", str(exc))
            return None

    def clean_webhook_secret(self) -> str:
        secret = self.cleaned_data.get("webhook_secret") or ""
        if secret and (":" not in secret or secret.startswith(":") or secret.endswith(":")):
            raise forms.ValidationError(
                _("Type the basic-auth credentials as user:password (both parts, one colon).")
            )
        return secret

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        self._clean_esp(cleaned)
        self._check_webhook_secrets(cleaned)
        # An SMTP password is sealed to the SMTP fields; the ESP plays no part in it.
        changed = [
            name
            for name in Route.DESTINATION_FIELDS
            if name in self.changed_data and name not in ("esp", "esp_endpoint")
        ]
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
        if route.kind != Route.Kind.ANYMAIL:  # (an ESP route's options are set by clean)
            route.esp_settings, route.esp_secrets_ciphertext = {}, ""
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
        (None, {"fields": ("name", "kind", "esp", "enabled", "priority")}),
        (
            _("ESP API (for ESP routes)"),
            {"fields": ("esp_settings_text", "esp_secrets_text", "clear_esp_secrets")},
        ),
        (
            _("Server (for SMTP routes)"),
            {"fields": ("host", "port", "security", "verify_certificate", "timeout")},
        ),
        (
            _("Direct to MX (for MX routes)"),
            {
                "fields": ("mx_tls", "ehlo_hostname"),
                "description": _(
                    "Mail goes to each recipient domain's MX hosts on port 25 (MTA-STS "
                    "policies enforced). Set the sending IPs below: the page then checks "
                    "that the EHLO name and the IP's reverse DNS match."
                ),
            },
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
            _("DKIM signing (by this app)"),
            {
                "fields": ("dkim_sign",),
                "description": _(
                    "Keys are per sending domain: generate them on the domain's page "
                    "(Sending domains)."
                ),
            },
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
            _("Webhooks (after the relay said yes)"),
            {
                "fields": (
                    "webhook_secret",
                    "clear_webhook_secret",
                    "webhook_signing_key",
                    "clear_webhook_signing_key",
                ),
                "description": _(
                    "The ESP chosen above posts its events (delivered, bounced, complained, "
                    "...) to the URLs shown below the form once the route is saved."
                ),
            },
        ),
        (_("History"), {"fields": ("created_at", "updated_at")}),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Route]:
        # From the hourly statistics (at most 24 x 6 rows a route), not a join
        # over every attempt the route ever made: the list costs the same with
        # five million attempts as with fifty thousand. The window starts at
        # the hour 24 hours ago began, the statistics' resolution.
        hours = DeliveryStat.objects.filter(
            route_name=OuterRef("name"), hour__gte=hour_of(timezone.now() - timedelta(hours=24))
        ).order_by()

        def total(rows: QuerySet) -> Coalesce:
            summed = rows.values("route_name").annotate(n=Sum("count")).values("n")
            return Coalesce(Subquery(summed), 0)

        return (
            super()
            .get_queryset(request)
            .annotate(
                attempts_24h=total(hours),
                faults_24h=total(hours.filter(outcome=DeliveryAttempt.Outcome.ROUTE_FAULT)),
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
        if route is not None:
            extra_context["ehlo_check"] = ehlo_panel(route)
        return super().change_view(request, object_id, form_url, extra_context)

    def connection_test_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return tool_view(self, request, object_id, "connection")

    def message_test_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return tool_view(self, request, object_id, "message")

    @admin.display(boolean=True, description=_("secret"))
    def password_set(self, obj: Route) -> bool:
        return obj.has_password or bool(obj.esp_secrets_ciphertext)

    @admin.display(description=_("name, kind"), ordering="name")
    def name_and_kind(self, obj: Route) -> str:
        kind = obj.get_kind_display()
        return format_html("{}{}", obj.name, help_line(f"{kind}, {obj.esp}" if obj.esp else kind))

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
