"""DKIM keys the app signs with, per sending domain.

A domain has at most one signing key per algorithm at a time: RSA-2048, and
optionally Ed25519 beside it (dual signing: receivers that know Ed25519
verify it, the others the RSA one). Rotating means generating a new key
under a new selector, publishing its record, and activating it: the old key
stops signing but stays listed, with its record, until the mail it signed
has been delivered and its record can go.

The private key is sealed (``sealing``) to its own ``selector._domainkey.domain``:
a row moved to another domain or selector is refused, not signed with.
"""

from __future__ import annotations

from django.db import models, transaction
from django.utils.translation import gettext_lazy as _

from .. import sealing
from ..signing import keys
from ..validators import validate_dkim_selector
from .domains import SenderDomain


class DkimKey(models.Model):
    """One DKIM key pair of a sending domain."""

    class Algorithm(models.TextChoices):
        RSA_SHA256 = keys.RSA_SHA256, _("RSA 2048 (rsa-sha256)")
        ED25519_SHA256 = keys.ED25519_SHA256, _("Ed25519 (ed25519-sha256)")

    domain = models.ForeignKey(SenderDomain, on_delete=models.CASCADE, related_name="dkim_keys")
    selector = models.CharField(_("selector"), max_length=63, validators=[validate_dkim_selector])
    algorithm = models.CharField(
        max_length=16, choices=Algorithm.choices, default=Algorithm.RSA_SHA256
    )
    # Fernet token of the PEM private key, sealed to the key's DNS name. Never shown back.
    private_key_ciphertext = models.TextField(editable=False)
    # The record's p= value: base64 of the public key.
    public_key = models.TextField(editable=False)
    active = models.BooleanField(
        default=False,
        help_text=_("Signs outgoing mail from the domain (on routes that sign)."),
    )
    created_at = models.DateTimeField(auto_now_add=True)
    activated_at = models.DateTimeField(null=True, blank=True)
    # What the last domain check found at ``name``: "published" (the record
    # matches the private key), or a finding code (dkim.missing, dkim.key_mismatch, ...).
    dns_status = models.CharField(_("DNS"), max_length=32, blank=True, editable=False)
    dns_checked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ("domain", "-active", "-created_at")
        verbose_name = _("DKIM key")
        verbose_name_plural = _("DKIM keys")
        constraints = [
            models.UniqueConstraint(
                fields=["domain", "selector"], name="smtprelay_dkimkey_selector"
            ),
            # Rotation replaces a key: two active keys of one kind would sign twice.
            models.UniqueConstraint(
                fields=["domain", "algorithm"],
                condition=models.Q(active=True),
                name="smtprelay_dkimkey_one_active",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        # Never the private key, not even sealed.
        return f"<DkimKey {self.name} {self.algorithm} {'active' if self.active else 'inactive'}>"

    @property
    def name(self) -> str:
        """Where the public key is published: ``selector._domainkey.domain``."""
        return f"{self.selector}._domainkey.{self.domain.domain}"

    @property
    def destination(self) -> str:
        """What the private key is sealed to."""
        return f"dkim {self.name}"

    @property
    def private_key(self) -> str:
        """The PEM private key, opened now; raises ``SMTPRelayError`` when it cannot be."""
        return sealing.unseal(self.private_key_ciphertext, self.destination)

    @private_key.setter
    def private_key(self, pem: str) -> None:
        # Sealed to the DNS name as it is now: set domain and selector first.
        self.private_key_ciphertext = sealing.seal(pem, self.destination)
        self.public_key = keys.public_key_b64(pem)

    @property
    def txt_record(self) -> str:
        """The TXT record's value to publish at :attr:`name`."""
        return keys.txt_record(self.algorithm, self.public_key)

    @property
    def txt_strings(self) -> list[str]:
        """The value in the 255-character strings a TXT record is made of."""
        return keys.txt_strings(self.txt_record)

    @classmethod
    def generate(cls, domain: SenderDomain, selector: str, algorithm: str) -> DkimKey:
        """A new key pair for ``domain``, saved inactive: publish its record, then activate it."""
        key = cls(domain=domain, selector=selector.strip().lower(), algorithm=algorithm)
        key.private_key = keys.generate(algorithm)
        key.full_clean()
        key.save()
        return key

    def activate(self) -> None:
        """Sign with this key from now on; the domain's active key of the same kind retires."""
        from django.utils import timezone

        with transaction.atomic():
            DkimKey.objects.filter(
                domain_id=self.domain_id, algorithm=self.algorithm, active=True
            ).exclude(pk=self.pk).update(active=False)
            self.active, self.activated_at = True, timezone.now()
            self.save(update_fields=["active", "activated_at"])

    def retire(self) -> None:
        """Stop signing with this key (its record should stay published a few days)."""
        self.active = False
        self.save(update_fields=["active"])
