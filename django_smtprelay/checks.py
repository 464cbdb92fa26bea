"""Django system checks for the app's configuration (ids: smtprelay.E/W###)."""

from __future__ import annotations

from typing import Any

from django.core import checks
from django.core.exceptions import ImproperlyConfigured


@checks.register(checks.Tags.compatibility)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    from .conf import AppSettings, get_config

    errors: list[checks.CheckMessage] = []
    try:
        get_config()
        app = AppSettings()
        for name in dir(AppSettings):
            if not name.startswith("_"):
                getattr(app, name)
    except ImproperlyConfigured as exc:
        errors.append(
            checks.Error(
                str(exc),
                hint="Fix the SMTPRELAY setting; README 'Configuration' lists every key.",
                id="smtprelay.E001",
            )
        )
        return errors
    try:
        from . import crypto

        crypto._fernet()
    except ImproperlyConfigured as exc:
        errors.append(
            checks.Error(str(exc), hint="Use keys from Fernet.generate_key().", id="smtprelay.E002")
        )
    if not get_config()["ENCRYPTION_KEYS"]:
        errors.append(
            checks.Info(
                "Relay passwords are encrypted with a key derived from SECRET_KEY.",
                hint="Set SMTPRELAY['ENCRYPTION_KEYS'] to rotate secrets independently; "
                "keep the old SECRET_KEY in SECRET_KEY_FALLBACKS when you change it.",
                id="smtprelay.I001",
            )
        )
    return errors
