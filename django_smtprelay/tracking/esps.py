"""Which ESPs a route's webhooks serve, and how anymail's view for each is secured.

Keys are anymail's names for the ESPs (``Route.esp``); each entry names
anymail's tracking and inbound webhook views and, for an ESP that signs its
posts, the view keyword that takes the signing key. Basic auth (the route's
``user:password``) is checked for every ESP where it is set, as anymail
recommends; an ESP that signs needs its signing key as well or instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import import_module

from django.views import View


@dataclass(frozen=True)
class ESP:
    key: str  # anymail's name: Route.esp
    label: str
    tracking: str  # dotted path of anymail's tracking webhook view
    inbound: str = ""  # and of its inbound view ('' if anymail has none)
    # The view keyword for the ESP's signing key, if it signs its posts.
    signing_kwarg: str = ""
    inbound_signing_kwarg: str = ""
    # Whether basic auth is the ESP's only protection (then the route needs it).
    needs_basic_auth: bool = True
    #: What to do in the ESP's console, for the admin and the README.
    setup: str = ""

    def view_class(self, which: str) -> type[View]:
        return _load(self.tracking if which == "tracking" else self.inbound)


_W = "anymail.webhooks."

ESPS: dict[str, ESP] = {
    esp.key: esp
    for esp in (
        ESP(
            "amazon_ses",
            "Amazon SES",
            _W + "amazon_ses.AmazonSESTrackingWebhookView",
            _W + "amazon_ses.AmazonSESInboundWebhookView",
            setup="SNS topic for the configuration set's events, HTTPS subscription to the URL "
            "(needs boto3: pip install 'django-anymail[amazon-ses]').",
        ),
        ESP(
            "postmark",
            "Postmark",
            _W + "postmark.PostmarkTrackingWebhookView",
            _W + "postmark.PostmarkInboundWebhookView",
            setup="Server > Message stream > Webhooks: add the URL, tick the events.",
        ),
        ESP(
            "mailgun",
            "Mailgun",
            _W + "mailgun.MailgunTrackingWebhookView",
            _W + "mailgun.MailgunInboundWebhookView",
            signing_kwarg="webhook_signing_key",
            inbound_signing_kwarg="webhook_signing_key",
            needs_basic_auth=False,
            setup="Sending > Webhooks: the URL for each event; the HTTP webhook signing key "
            "goes in the route's signing key.",
        ),
        ESP(
            "sendgrid",
            "SendGrid",
            _W + "sendgrid.SendGridTrackingWebhookView",
            _W + "sendgrid.SendGridInboundWebhookView",
            setup="Settings > Mail Settings > Event Webhook: the URL, the events.",
        ),
        ESP(
            "brevo",
            "Brevo",
            _W + "brevo.BrevoTrackingWebhookView",
            _W + "brevo.BrevoInboundWebhookView",
            setup="Transactional > Settings > Webhook: the URL, the events.",
        ),
        ESP(
            "sparkpost",
            "SparkPost",
            _W + "sparkpost.SparkPostTrackingWebhookView",
            _W + "sparkpost.SparkPostInboundWebhookView",
            setup="Configuration > Webhooks: the URL with basic authentication.",
        ),
        ESP(
            "mailjet",
            "Mailjet",
            _W + "mailjet.MailjetTrackingWebhookView",
            _W + "mailjet.MailjetInboundWebhookView",
            setup="Account > Event notifications (webhooks): the URL for each event.",
        ),
        ESP(
            "postal",
            "Postal",
            _W + "postal.PostalTrackingWebhookView",
            _W + "postal.PostalInboundWebhookView",
            signing_kwarg="webhook_key",
            inbound_signing_kwarg="webhook_key",
            needs_basic_auth=False,
            setup="Webhooks: the URL; the server's public signing key goes in the route's "
            "signing key.",
        ),
        ESP(
            "mailersend",
            "MailerSend",
            _W + "mailersend.MailerSendTrackingWebhookView",
            _W + "mailersend.MailerSendInboundWebhookView",
            signing_kwarg="signing_secret",
            inbound_signing_kwarg="inbound_secret",
            needs_basic_auth=False,
            setup="Domains > Webhooks: the URL; its signing secret goes in the route's "
            "signing key.",
        ),
    )
}

#: anymail's display names (a signal's ``esp_name``) -> our keys.
BY_ANYMAIL_NAME = {esp.label: esp.key for esp in ESPS.values()} | {"SendinBlue": "brevo"}


@cache
def _load(path: str) -> type[View]:
    module, _, name = path.rpartition(".")
    return getattr(import_module(module), name)
