"""Re-encrypt every stored secret with the newest key, after a key is added.

Run after putting a new key first in ``SMTPRELAY["ENCRYPTION_KEYS"]`` (or
changing ``SECRET_KEY`` with the old one in ``SECRET_KEY_FALLBACKS``); then
the old key can be dropped. Every ``*_ciphertext`` field of the app's models
is rotated, all or nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import models, router, transaction

from ... import crypto
from ...exceptions import SecretDecryptionError

SUFFIX = "_ciphertext"


@dataclass
class _Column:
    """One model's secret field and its rows' tokens: (pk, stored, re-encrypted)."""

    model: type[models.Model]
    name: str
    tokens: list[tuple[Any, str, str]] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.model._meta.label_lower}.{self.name}"


def secret_columns() -> list[_Column]:
    """Every ``*_ciphertext`` field of the app's models."""
    return [
        _Column(model, f.name)
        for model in apps.get_app_config("django_smtprelay").get_models()
        for f in model._meta.concrete_fields
        if f.name.endswith(SUFFIX)
    ]


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret (relay passwords, DKIM keys, ...) with the newest "
        "key: the first of SMTPRELAY['ENCRYPTION_KEYS'], else the one derived from SECRET_KEY."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Check that every secret decrypts and count them; write nothing.",
        )

    def handle(self, *args: Any, dry_run: bool, **options: Any) -> None:
        columns = secret_columns()
        using = router.db_for_write(columns[0].model) if columns else "default"
        with transaction.atomic(using=using):
            unreadable = []
            for column in columns:
                # Locked until the end, so a secret saved meanwhile is not overwritten.
                rows = (
                    column.model._default_manager.using(using)
                    .select_for_update()
                    .exclude(**{column.name: ""})
                    .exclude(**{f"{column.name}__isnull": True})
                    .order_by("pk")
                    .values_list("pk", column.name)
                )
                for pk, token in rows:
                    try:
                        column.tokens.append((pk, token, crypto.rotate(token)))
                    except SecretDecryptionError:
                        unreadable.append(self._describe(column, pk, using))
            if unreadable:
                raise CommandError(
                    f"{len(unreadable)} stored secret(s) cannot be decrypted with the "
                    f"configured keys, so nothing was changed: {'; '.join(unreadable)}. Put the "
                    "key they were encrypted with back (in SMTPRELAY['ENCRYPTION_KEYS'] after "
                    "the newest, or in SECRET_KEY_FALLBACKS), or clear those secrets in the "
                    "admin and type them again; then run this command again."
                )
            for column in columns:
                done = len(column.tokens)
                if not dry_run:
                    manager = column.model._default_manager.using(using)
                    done = sum(
                        manager.filter(pk=pk, **{column.name: old}).update(**{column.name: new})
                        for pk, old, new in column.tokens
                    )
                verb = "to re-encrypt (dry run, nothing written)" if dry_run else "re-encrypted"
                self.stdout.write(f"{column.label}: {done} {verb}")

    @staticmethod
    def _describe(column: _Column, pk: Any, using: str) -> str:
        # The row's name (a route's is its name) and the field; never the token.
        row = column.model._default_manager.using(using).get(pk=pk)
        return f"{column.model._meta.verbose_name} {str(row)!r} (id {pk}), field {column.name}"
