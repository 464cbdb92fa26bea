"""Accounts that other programs submit mail with, over SMTP (``smtprelay_serve``)."""

from __future__ import annotations

from django.contrib.auth.hashers import check_password, is_password_usable, make_password
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


def parse_allowed_senders(text: str) -> list[str]:
    """The allowed senders, one per line or comma: ``user@example.com`` (that
    address) or ``example.com`` / ``@example.com`` (any address at that domain),
    lower-cased; raise ``ValidationError`` naming a line that is neither."""
    entries: list[str] = []
    for raw in text.replace(",", "\n").splitlines():
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry.startswith("@"):
            entry = entry[1:]
        check = entry if "@" in entry else f"postmaster@{entry}"
        try:
            validate_email(check)
        except ValidationError:
            raise ValidationError(
                _(
                    "%(entry)r is neither an address (user@example.com) nor a domain "
                    "(example.com); write one of them per line."
                ),
                params={"entry": raw.strip()},
            ) from None
        entries.append(entry)
    return entries


class SubmissionAccount(models.Model):
    """One program's SMTP login: who it may send as, where its mail goes, how much.

    The password is kept as a Django password hash (it is only ever checked,
    never sent anywhere), set through :meth:`set_password`.
    """

    name = models.CharField(max_length=100, unique=True, help_text=_("What submits with it."))
    username = models.CharField(max_length=150, unique=True)
    password = models.CharField(max_length=128, editable=False, default="")
    allowed_senders = models.TextField(
        blank=True,
        help_text=_(
            "Envelope senders and From addresses it may use, one per line: an address "
            "(cron@example.com) or a whole domain (example.com). Empty: none."
        ),
        validators=[parse_allowed_senders],
    )
    route_tag = models.CharField(
        max_length=100,
        blank=True,
        help_text=_("Route tag (or route name) its messages ask for; empty: the usual routes."),
    )
    max_messages_per_minute = models.PositiveIntegerField(null=True, blank=True)
    max_messages_per_hour = models.PositiveIntegerField(null=True, blank=True)
    max_message_size = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text=_("Largest message in bytes; empty: the listener's limit."),
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_client = models.GenericIPAddressField(null=True, blank=True, editable=False)
    messages_accepted = models.PositiveBigIntegerField(default=0, editable=False)
    messages_rejected = models.PositiveBigIntegerField(default=0, editable=False)

    class Meta:
        ordering = ("name",)
        verbose_name = _("submission account")

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:  # never the password hash
        return f"<SubmissionAccount {self.pk}: {self.username!r}>"

    def set_password(self, raw_password: str | None) -> None:
        """Hash ``raw_password`` (None: no password works)."""
        self.password = make_password(raw_password)

    def check_password(self, raw_password: str) -> bool:
        return bool(self.password) and check_password(raw_password, self.password)

    @property
    def has_password(self) -> bool:
        return bool(self.password) and is_password_usable(self.password)

    def may_send_as(self, address: str) -> bool:
        """Whether ``address`` is one of the allowed senders or at an allowed domain."""
        address = address.strip().lower()
        domain = address.rpartition("@")[2]
        allowed = parse_allowed_senders(self.allowed_senders)
        return bool(address) and (address in allowed or domain in allowed)
