"""Relay routes: where and how the queue is delivered."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from .. import crypto, esps, sealing
from ..exceptions import SMTPRelayError
from ..matching import validate_domain_patterns
from ..validators import (
    IPNetwork,
    parse_networks,
    validate_dkim_selector,
    validate_domain_name,
    validate_ip_list,
)


def webhook_destination(name: str, esp: str) -> str:
    """What a route's webhook credentials are sealed to: its webhook URL (name) and ESP."""
    return f"webhook {name} for {esp or 'no ESP'}"


class Route(models.Model):
    """One way out: an SMTP smarthost, an ESP's API through django-anymail, or
    straight to each recipient domain's MX hosts."""

    #: What a stored secret is sealed to: where it is sent and how it is
    #: protected on the way (see :mod:`django_smtprelay.sealing`). An ESP
    #: route's secrets are sealed to its ESP and API endpoint (``esp_endpoint``:
    #: the API base URL, endpoint or region options).
    DESTINATION_FIELDS = (
        "kind",
        "host",
        "port",
        "security",
        "verify_certificate",
        "allow_plaintext_auth",
        "esp",
        "esp_endpoint",
    )

    class Kind(models.TextChoices):
        SMTP = "smtp", _("SMTP relay")
        ANYMAIL = "anymail", _("ESP API (django-anymail)")
        MX = "mx", _("Direct to MX")

    class MXTLS(models.TextChoices):
        OPPORTUNISTIC = "opportunistic", _("Opportunistic: STARTTLS when offered")
        VERIFIED = "verified", _("Required, with a valid certificate for the MX host")

    class Security(models.TextChoices):
        NONE = "none", _("None (plaintext)")
        STARTTLS = "starttls", _("STARTTLS")
        TLS = "tls", _("Implicit TLS")

    name = models.SlugField(max_length=100, unique=True, help_text=_("Unique, used in logs."))
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.SMTP)
    # The ESP behind the route, by anymail's name for it ("postmark",
    # "amazon_ses", ...): for an ESP route, the backend that sends; for an SMTP
    # route through an ESP's SMTP endpoint, whose ids and webhooks report on it.
    esp = models.CharField(
        _("ESP"),
        max_length=40,
        blank=True,
        help_text=_(
            "The email service provider behind this route, if any: its events "
            "(delivered, bounced, complained) are matched to the messages sent here."
        ),
    )
    # The ESP route's options (anymail's names: "api_url", "message_stream",
    # ...) but its secrets, which are in ``esp_secrets_ciphertext``; see the
    # ``esp_options`` property.
    esp_settings = models.JSONField(_("ESP options"), default=dict, blank=True, editable=False)
    # Fernet token of the secret options as JSON, sealed to the ESP and its
    # endpoint. Never shown back in the admin.
    esp_secrets_ciphertext = models.TextField(blank=True, editable=False)
    host = models.CharField(max_length=255, blank=True, help_text=_("For SMTP routes."))
    port = models.PositiveIntegerField(
        default=587, validators=[MinValueValidator(1), MaxValueValidator(65535)]
    )
    security = models.CharField(max_length=10, choices=Security.choices, default=Security.STARTTLS)
    verify_certificate = models.BooleanField(
        default=True,
        help_text=_("Verify the relay's TLS certificate and host name. Turn off only for tests."),
    )
    allow_plaintext_auth = models.BooleanField(
        default=False,
        help_text=_("Send the username and password even without TLS. Almost never right."),
    )
    # Direct-to-MX routes: how much TLS the MX hosts must offer. Most MX
    # certificates do not match the host's name, so the default delivers over
    # whatever TLS there is (and says so on the attempt); MTA-STS enforces more
    # for the domains that publish a policy.
    mx_tls = models.CharField(
        _("MX TLS"),
        max_length=16,
        choices=MXTLS.choices,
        default=MXTLS.OPPORTUNISTIC,
        help_text=_(
            "For direct-to-MX routes. Opportunistic: encrypt when the MX host offers "
            "STARTTLS, even with a certificate that does not verify (the attempt says so). "
            "Required: only over TLS with a valid certificate for the MX host's name, "
            "otherwise the next MX host, then defer."
        ),
    )
    ehlo_hostname = models.CharField(
        _("EHLO name"),
        max_length=253,
        blank=True,
        validators=[validate_domain_name],
        help_text=_(
            "The name this route says in EHLO. Blank: the EHLO_HOSTNAME setting, or the "
            "machine's name. For direct-to-MX routes receivers check that it resolves to "
            "the sending IP and that the IP's reverse DNS (PTR) gives it back."
        ),
    )
    username = models.CharField(max_length=255, blank=True)
    # Fernet token; see the ``password`` property. Never shown back in the admin.
    password_ciphertext = models.TextField(blank=True, editable=False)
    # Which messages the route takes (blank: any). Patterns are domains with
    # shell-style wildcards, one per line or comma-separated: example.com, *.example.org.
    sender_domains = models.TextField(
        blank=True,
        validators=[validate_domain_patterns],
        help_text=_("Only mail from these domains (envelope or From). Blank: any sender."),
    )
    recipient_domains = models.TextField(
        blank=True,
        validators=[validate_domain_patterns],
        help_text=_("Only recipients at these domains. Blank: any recipient."),
    )
    tags = models.CharField(
        max_length=255,
        blank=True,
        validators=[validate_domain_patterns],
        help_text=_(
            "Comma-separated names a message can ask for (msg.smtprelay_route = 'tag'). "
            "A route with tags takes only messages that ask for one of them or for its name."
        ),
    )
    weight = models.PositiveIntegerField(
        default=1, help_text=_("Share of traffic among enabled routes of the same priority.")
    )
    max_message_size = models.PositiveIntegerField(
        null=True, blank=True, help_text=_("Bytes; larger messages go to another route.")
    )
    max_per_second = models.PositiveIntegerField(null=True, blank=True)
    max_per_minute = models.PositiveIntegerField(null=True, blank=True)
    max_per_hour = models.PositiveIntegerField(null=True, blank=True)
    max_connections = models.PositiveIntegerField(
        null=True, blank=True, help_text=_("Concurrent SMTP sessions across all workers.")
    )
    timeout = models.FloatField(
        default=30.0, validators=[MinValueValidator(0.1)], help_text=_("Seconds per SMTP command.")
    )
    priority = models.PositiveSmallIntegerField(
        default=100, help_text=_("Lower is tried first; equal priorities share traffic.")
    )
    enabled = models.BooleanField(default=True)
    # What the route sends as, for the sending-domain checks (SPF, DMARC, DKIM).
    sending_ips = models.TextField(
        blank=True,
        validators=[validate_ip_list],
        help_text=_(
            "IP addresses or networks (CIDR) the relay sends from, one per line or "
            "comma-separated. Blank: unknown (the relay's SPF include is used if set)."
        ),
    )
    spf_include = models.CharField(
        _("SPF include"),
        max_length=253,
        blank=True,
        validators=[validate_domain_name],
        help_text=_(
            "The relay's SPF include domain (e.g. spf.relay.example): its record lists the "
            "relay's sending IPs, and it is what a sending domain adds to its own SPF record."
        ),
    )
    return_path_domain = models.CharField(
        max_length=253,
        blank=True,
        validators=[validate_domain_name],
        help_text=_(
            "Envelope-from (Return-Path) domain the relay rewrites to, if it does. "
            "Blank: the sender's own domain."
        ),
    )
    dkim_domain = models.CharField(
        _("DKIM domain (d=)"),
        max_length=253,
        blank=True,
        validators=[validate_domain_name],
        help_text=_(
            "Domain the route signs with (d=). Blank with a selector set: the sender's own "
            "domain (the usual setup: the relay signs as each sending domain)."
        ),
    )
    dkim_selector = models.CharField(
        _("DKIM selector (s=)"),
        max_length=63,
        blank=True,
        validators=[validate_dkim_selector],
        help_text=_(
            "Selector the route signs with (s=); the key is at <s>._domainkey.<d>. "
            "Blank: the route does not sign."
        ),
    )
    dkim_sign = models.BooleanField(
        _("sign with DKIM"),
        default=False,
        help_text=_(
            "Sign each message just before sending, with the active DKIM keys of its From "
            "domain (Sending domains). Mail from a domain without a key goes unsigned. "
            "SMTP and direct-to-MX routes; not ESP routes: the ESP signs."
        ),
    )
    # Fernet token of the PEM private key this app signs with on this route, if
    # it signs itself; used to compare with the published key. Never shown back.
    dkim_private_key_ciphertext = models.TextField(blank=True, editable=False)
    # The route's webhook credentials (see django_smtprelay.tracking), sealed to
    # the webhook they were typed for: the basic-auth "user:password" the ESP
    # posts with, and the ESP's signing key where it signs its posts.
    webhook_secret_ciphertext = models.TextField(blank=True, editable=False)
    webhook_signing_key_ciphertext = models.TextField(blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("priority", "name")

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        # Never include the password or an API key, even encrypted.
        if self.kind == self.Kind.ANYMAIL:
            return (
                f"<Route {self.name!r} anymail {self.esp} at "
                f"{self.esp_endpoint or 'default endpoint'} priority={self.priority}>"
            )
        if self.kind == self.Kind.MX:
            return f"<Route {self.name!r} mx tls={self.mx_tls} priority={self.priority}>"
        return (
            f"<Route {self.name!r} {self.security}://{self.host}:{self.port} "
            f"user={'set' if self.username else 'none'} priority={self.priority}>"
        )

    @property
    def esp_endpoint(self) -> str:
        """Where an ESP route's requests go (its endpoint options), in words."""
        if self.kind != self.Kind.ANYMAIL:
            return ""
        return esps.endpoint(self.esp, self.esp_settings or {})

    @property
    def esp_options(self) -> dict[str, object]:
        """The ESP route's options, secrets opened now.

        Raises ``SecretDestinationError`` when the stored secrets were typed for
        another ESP or endpoint than the route has now.
        """
        return {**(self.esp_settings or {}), **self.esp_secrets}

    @esp_options.setter
    def esp_options(self, options: dict[str, object]) -> None:
        # Sealed to the ESP and endpoint the options give: set kind and esp first.
        secret = {name for name in options if esps.is_secret(self.esp, name)}
        self.esp_settings = {k: v for k, v in options.items() if k not in secret}
        self.esp_secrets = {k: v for k, v in options.items() if k in secret}

    @property
    def esp_secrets(self) -> dict[str, str]:
        """The ESP route's secret options (API keys, tokens), opened now."""
        import json

        text = sealing.unseal(self.esp_secrets_ciphertext, self.destination)
        return json.loads(text) if text else {}

    @esp_secrets.setter
    def esp_secrets(self, secrets: dict[str, str]) -> None:
        import json

        cleaned = {k: v for k, v in secrets.items() if v not in (None, "")}
        text = json.dumps(cleaned, sort_keys=True) if cleaned else ""
        self.esp_secrets_ciphertext = sealing.seal(text, self.destination)

    @property
    def esp_secret_names(self) -> list[str]:
        """Which secret options are stored (the names only: readable without the key)."""
        try:
            return sorted(self.esp_secrets)
        except SMTPRelayError:
            return []

    @property
    def destination(self) -> str:
        """Where the password goes: it is sealed to this and refused anywhere else."""
        return sealing.destination(**{f: getattr(self, f) for f in self.DESTINATION_FIELDS})

    @property
    def password(self) -> str:
        """The relay password, decrypted on use.

        Raises ``SecretDestinationError`` when it was typed for another
        destination (host, port, security) than the route has now.
        """
        return sealing.unseal(self.password_ciphertext, self.destination)

    @password.setter
    def password(self, value: str) -> None:
        # Sealed to the destination as it is now: set host, port and security first.
        self.password_ciphertext = sealing.seal(value or "", self.destination)

    @property
    def password_destination(self) -> str | None:
        """The destination the stored password was typed for (None: none stored, or unbound)."""
        return sealing.sealed_to(self.password_ciphertext)

    @property
    def has_password(self) -> bool:
        return bool(self.password_ciphertext)

    @property
    def dkim_private_key(self) -> str:
        """The PEM DKIM private key the app signs with on this route, decrypted on use."""
        return crypto.decrypt(self.dkim_private_key_ciphertext)

    @dkim_private_key.setter
    def dkim_private_key(self, value: str) -> None:
        self.dkim_private_key_ciphertext = crypto.encrypt(value or "")

    @property
    def webhook_destination(self) -> str:
        """What the webhook credentials are sealed to: the route's webhook URL and its ESP.

        Renaming the route (its URL) or changing its ESP asks for them again.
        """
        return webhook_destination(self.name, self.esp)

    @property
    def webhook_secret(self) -> str:
        """The basic-auth ``user:password`` the ESP posts with, decrypted on use."""
        return sealing.unseal(self.webhook_secret_ciphertext, self.webhook_destination)

    @webhook_secret.setter
    def webhook_secret(self, value: str) -> None:
        # Sealed to the webhook as it is now: set the name and ESP first.
        self.webhook_secret_ciphertext = sealing.seal(value or "", self.webhook_destination)

    @property
    def webhook_signing_key(self) -> str:
        """The ESP's key for signed webhooks (Mailgun, Mailersend, ...), decrypted on use."""
        return sealing.unseal(self.webhook_signing_key_ciphertext, self.webhook_destination)

    @webhook_signing_key.setter
    def webhook_signing_key(self, value: str) -> None:
        self.webhook_signing_key_ciphertext = sealing.seal(value or "", self.webhook_destination)

    def clean(self) -> None:
        super().clean()
        if self.kind == self.Kind.SMTP and not self.host:
            raise ValidationError({"host": _("An SMTP route needs the relay's host name.")})
        if self.dkim_sign and self.kind == self.Kind.ANYMAIL:
            raise ValidationError(
                {
                    "dkim_sign": _(
                        "An ESP route cannot sign: the ESP signs the mail it sends (set up "
                        "DKIM in the ESP's console). Untick 'sign with DKIM'."
                    )
                }
            )
        if self.kind == self.Kind.MX and self.username:
            raise ValidationError(
                {
                    "username": _(
                        "A direct-to-MX route logs in nowhere: clear the username (and "
                        "password), or make it an SMTP route."
                    )
                }
            )
        if self.kind == self.Kind.ANYMAIL and not self.esp:
            raise ValidationError({"esp": _("Choose the ESP this route sends through.")})
        if self.esp and self.esp not in esps.available():
            raise ValidationError(
                {
                    "esp": _("%(esp)s is not an ESP django-anymail ships (it has: %(names)s).")
                    % {"esp": self.esp, "names": ", ".join(esps.available())}
                }
            )
        if self.kind == self.Kind.ANYMAIL:
            try:
                options = self.esp_options
            except SMTPRelayError as exc:
                raise ValidationError({"esp": str(exc)}) from exc
            try:
                esps.validate(self.esp, options)
            except esps.ESPOptionsError as exc:
                raise ValidationError({"esp": str(exc)}) from exc
        if self.dkim_domain and not self.dkim_selector:
            raise ValidationError(
                {
                    "dkim_selector": _(
                        "Set the selector the route signs with for %(domain)s, or clear "
                        "the DKIM domain."
                    )
                    % {"domain": self.dkim_domain}
                }
            )

    def sending_networks(self) -> list[IPNetwork]:
        """The relay's own sending networks, parsed (empty when unknown)."""
        return parse_networks(self.sending_ips)

    def signing_domain(self, sender_domain: str) -> str:
        """The DKIM d= a message from ``sender_domain`` is signed with ('' if unsigned)."""
        if not self.dkim_selector:
            return ""
        return (self.dkim_domain or sender_domain).lower().rstrip(".")

    def envelope_domain(self, sender_domain: str) -> str:
        """The envelope-from domain a message from ``sender_domain`` leaves this route with."""
        return (self.return_path_domain or sender_domain).lower().rstrip(".")
