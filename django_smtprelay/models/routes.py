"""Relay routes: where and how the queue is delivered."""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from .. import crypto
from ..matching import validate_domain_patterns


class Route(models.Model):
    """One way out: an SMTP smarthost (later: an ESP API, or direct MX)."""

    class Kind(models.TextChoices):
        SMTP = "smtp", _("SMTP relay")

    class Security(models.TextChoices):
        NONE = "none", _("None (plaintext)")
        STARTTLS = "starttls", _("STARTTLS")
        TLS = "tls", _("Implicit TLS")

    name = models.SlugField(max_length=100, unique=True, help_text=_("Unique, used in logs."))
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.SMTP)
    host = models.CharField(max_length=255)
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
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("priority", "name")

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        # Never include the password, even encrypted.
        return (
            f"<Route {self.name!r} {self.security}://{self.host}:{self.port} "
            f"user={'set' if self.username else 'none'} priority={self.priority}>"
        )

    @property
    def password(self) -> str:
        """The relay password, decrypted on use."""
        return crypto.decrypt(self.password_ciphertext)

    @password.setter
    def password(self, value: str) -> None:
        self.password_ciphertext = crypto.encrypt(value or "")

    @property
    def has_password(self) -> bool:
        return bool(self.password_ciphertext)
