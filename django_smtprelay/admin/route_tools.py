"""A route's test tools in the admin: "Test connection" and "Send a test message".

Each is a page under the route's change page: a GET shows what will happen
(and, for a test message, asks for the recipient); the POST runs the test
through the route's own transport and shows the whole SMTP dialogue, the
secrets masked (see :mod:`django_smtprelay.transports.probe`). Both need the
change permission on routes; nothing is queued or recorded.
"""

from __future__ import annotations

from email.utils import parseaddr
from typing import TYPE_CHECKING

from django import forms
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.core.mail import EmailMessage
from django.core.validators import validate_email
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from ..routing import RouteSpec
from ..serialize import serialize
from ..transports import probe

if TYPE_CHECKING:
    from django.contrib.admin import ModelAdmin

    from ..models import Route

TEMPLATE = "admin/django_smtprelay/route/test_tool.html"


class RouteTestMessageForm(forms.Form):
    recipient = forms.EmailField(
        label=_("Send to"),
        help_text=_("The message goes to this address only, now."),
        widget=forms.EmailInput(attrs={"size": 40}),
    )
    sender = forms.CharField(
        label=_("From"),
        max_length=254,
        help_text=_("The From header; its address is the envelope sender."),
        widget=forms.TextInput(attrs={"size": 40}),
    )

    def clean_sender(self) -> str:
        value = self.cleaned_data["sender"]
        if "\r" in value or "\n" in value:
            raise forms.ValidationError(_("The sender must be one line."))
        _name, address = parseaddr(value)
        try:
            validate_email(address)
        except forms.ValidationError:
            raise forms.ValidationError(
                _("%(value)s is not an address (user@example.com, or Name <user@example.com>).")
                % {"value": value}
            ) from None
        return value

    @property
    def envelope_sender(self) -> str:
        return parseaddr(self.cleaned_data["sender"])[1]


def steps(route: Route, sending: bool) -> str:
    """What a test does on this route, in words."""
    if route.kind == "anymail":
        where = route.esp_endpoint or "its default endpoint"
        done = f"builds the {route.esp} backend with the route's options, for {where}"
        if sending:
            return done + ", then sends the message to its API"
        return done + " (checking that no option is missing or unknown); no request is made"
    if route.kind == "mx":
        if not sending:
            return "has no server of its own to connect to: send a test message instead"
        return (
            "looks up the recipient domain's MX hosts and MTA-STS policy, connects to them "
            "in turn, says EHLO, starts TLS when offered, sends the message, then QUITs"
        )
    done = [f"connects to {route.host}:{route.port}"]
    if route.security == "tls":
        done[0] += " with TLS"
    done.append("says EHLO")
    if route.security == "starttls":
        done.append("starts TLS (STARTTLS)")
    if route.security != "none":
        done[-1] += " verifying the certificate" if route.verify_certificate else ""
    if route.username:
        done.append(f"logs in (AUTH) as {route.username}")
    if sending:
        done.append("sends the message")
    return ", ".join(done) + ", then QUITs"


def tool_view(
    model_admin: ModelAdmin, request: HttpRequest, object_id: str, tool: str
) -> HttpResponse:
    """The page of one tool ("connection" or "message") for the route ``object_id``."""
    route: Route | None = model_admin.get_object(request, object_id)
    if route is None:
        raise Http404(f"No route with id {object_id!r}.")
    if not model_admin.has_change_permission(request, route):
        raise PermissionDenied
    if request.method not in ("GET", "POST"):
        return HttpResponseNotAllowed(["GET", "POST"])
    form = None
    if tool == "message":
        data = request.POST if request.method == "POST" else None
        form = RouteTestMessageForm(data, initial={"sender": settings.DEFAULT_FROM_EMAIL})
    result = None
    if request.method == "POST" and (form is None or form.is_valid()):
        spec = RouteSpec.from_route(route)
        if form is None:
            result = probe.check_connection(spec)
        else:
            data = form.cleaned_data
            raw, _message_id = serialize(_message(route, data))
            result = probe.send_test_message(spec, form.envelope_sender, data["recipient"], raw)
    titles = {"connection": _("Test connection"), "message": _("Send a test message")}
    opts = model_admin.model._meta
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": opts,
        "original": route,
        "title": f"{titles[tool]}: {route.name}",
        "tool": tool,
        "steps": steps(route, sending=tool == "message"),
        "form": form,
        "result": result,
        "change_url": reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[route.pk]),
    }
    return TemplateResponse(request, TEMPLATE, context)


def _message(route: Route, data: dict[str, str]) -> EmailMessage:
    now = timezone.localtime()
    return EmailMessage(
        subject=f"Test message through route {route.name}",
        body=(
            f"This message was sent from the admin at {now:%Y-%m-%d %H:%M:%S %Z}\n"
            f"through the route {route.name} ({route.host}:{route.port}), "
            "to check that the route delivers.\n"
        ),
        from_email=data["sender"],
        to=[data["recipient"]],
    )
