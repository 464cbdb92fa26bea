"""A sending domain's DKIM keys in the admin: generate, publish, activate, retire.

The keys are shown on the domain's page (never their private half): each
with the exact TXT record to publish and what the last check found there.
A new key is generated inactive; "Activate" looks the record up first and
refuses while it is missing or does not match, so mail is never signed with
a key receivers cannot find. Activating retires the domain's active key of
the same kind, which stays listed with its record until it is deleted.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from ..domains.dkim import check_selector
from ..domains.resolver import DNSUnavailable, Resolver, clear_cache
from ..exceptions import SMTPRelayError
from ..matching import domain_matches, split_patterns
from ..models import DkimKey, Route, SenderDomain
from ..validators import validate_dkim_selector


class GenerateKeyForm(forms.Form):
    selector = forms.CharField(max_length=63, validators=[validate_dkim_selector])
    algorithm = forms.ChoiceField(choices=DkimKey.Algorithm.choices)


def default_selector(domain: SenderDomain, algorithm: str = DkimKey.Algorithm.RSA_SHA256) -> str:
    """A free selector named for the month and kind: ``202611r``, ``202611e``, ``202611r2``."""
    stem = f"{timezone.now():%Y%m}{'e' if algorithm == DkimKey.Algorithm.ED25519_SHA256 else 'r'}"
    taken = set(domain.dkim_keys.values_list("selector", flat=True))
    number = 1
    while (candidate := stem if number == 1 else f"{stem}{number}") in taken:
        number += 1
    return candidate


def keys_context(domain: SenderDomain, url_name: str) -> dict[str, Any]:
    """What the domain page shows about its keys."""
    keys = list(domain.dkim_keys.all())
    signing_routes = [
        route.name
        for route in Route.objects.filter(enabled=True, dkim_sign=True)
        if domain_matches(domain.domain, split_patterns(route.sender_domains))
    ]
    return {
        "keys": [
            {
                "key": key,
                "strings": key.txt_strings,
                "activate_url": reverse(url_name, args=[domain.pk, key.pk, "activate"]),
                "retire_url": reverse(url_name, args=[domain.pk, key.pk, "retire"]),
                "attempts_url": reverse("admin:django_smtprelay_deliveryattempt_changelist")
                + f"?dkim_key={key.pk}",
            }
            for key in keys
        ],
        "unsigned": not any(k.active for k in keys),
        "signing_routes": signing_routes,
        "generate_url": reverse(url_name, args=[domain.pk, 0, "generate"]),
        "default_selector": default_selector(domain),
        "algorithms": DkimKey.Algorithm.choices,
    }


class DomainKeysMixin:
    """URLs and views for a SenderDomainAdmin: generate, activate and retire keys."""

    def key_urls(self) -> list[URLPattern]:
        info = self.opts.app_label, self.opts.model_name  # type: ignore[attr-defined]
        return [
            path(
                "<path:object_id>/dkim/<int:key_id>/<str:action>/",
                self.admin_site.admin_view(self.dkim_key_view),  # type: ignore[attr-defined]
                name="{}_{}_dkim".format(*info),
            )
        ]

    def dkim_key_view(
        self, request: HttpRequest, object_id: str, key_id: int, action: str
    ) -> HttpResponse:
        """POST only: generate a key, or activate or retire one; back to the domain's page."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        domain = self.get_object(request, unquote(object_id))  # type: ignore[attr-defined]
        if domain is None:
            raise Http404(_("No sending domain with the id %(id)r.") % {"id": object_id})
        if not self.has_change_permission(request, domain):  # type: ignore[attr-defined]
            raise PermissionDenied
        if action == "generate":
            self._generate(request, domain)
        elif action in ("activate", "retire"):
            key = domain.dkim_keys.filter(pk=key_id).first()
            if key is None:
                raise Http404(_("No DKIM key %(id)r on this domain.") % {"id": key_id})
            self._activate(request, key) if action == "activate" else self._retire(request, key)
        else:
            raise Http404(_("Unknown action %(action)r.") % {"action": action})
        info = self.opts.app_label, self.opts.model_name  # type: ignore[attr-defined]
        url = reverse("admin:{}_{}_change".format(*info), args=[domain.pk])
        return HttpResponseRedirect(url + "#dkim-keys")

    def _generate(self, request: HttpRequest, domain: SenderDomain) -> None:
        form = GenerateKeyForm(request.POST)
        if not form.is_valid():
            errors = "; ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items())
            self.message_user(request, errors, messages.ERROR)  # type: ignore[attr-defined]
            return
        selector = form.cleaned_data["selector"].lower()
        if domain.dkim_keys.filter(selector=selector).exists():
            self.message_user(  # type: ignore[attr-defined]
                request,
                _("The selector %(selector)s is taken on %(domain)s: choose another.")
                % {"domain": domain.domain, "selector": selector},
                messages.ERROR,
            )
            return
        key = DkimKey.generate(domain, selector, form.cleaned_data["algorithm"])
        self.message_user(  # type: ignore[attr-defined]
            request,
            _("Generated %(name)s. Publish its TXT record (below), then activate it.")
            % {"name": key.name},
            messages.SUCCESS,
        )

    def _activate(self, request: HttpRequest, key: DkimKey) -> None:
        clear_cache()
        try:
            pem = key.private_key
            found = check_selector(key.domain.domain, key.selector, Resolver(), pem)
        except (SMTPRelayError, DNSUnavailable) as exc:
            self.message_user(  # type: ignore[attr-defined]
                request,
                _("Not activated, %(name)s: %(error)s") % {"name": key.name, "error": exc},
                messages.ERROR,
            )
            return
        key.dns_status = found.problem or "published"
        key.dns_checked_at = timezone.now()
        key.save(update_fields=["dns_status", "dns_checked_at"])
        if not found.usable:
            self.message_user(  # type: ignore[attr-defined]
                request,
                _(
                    "Not activated, %(name)s: the published record is not this key's "
                    "(%(problem)s). Publish the TXT record shown, wait for DNS, and try again."
                )
                % {"name": key.name, "problem": found.problem or "no usable key"},
                messages.ERROR,
            )
            return
        key.activate()
        self.message_user(  # type: ignore[attr-defined]
            request,
            _("From now on, %(name)s signs the domain's mail.") % {"name": key.name},
            messages.SUCCESS,
        )

    def _retire(self, request: HttpRequest, key: DkimKey) -> None:
        key.retire()
        self.message_user(  # type: ignore[attr-defined]
            request,
            _(
                "No longer signing with %(name)s. Keep its record published for a few days, "
                "until the mail it signed has been delivered."
            )
            % {"name": key.name},
            messages.SUCCESS,
        )
