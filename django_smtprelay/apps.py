from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class SMTPRelayConfig(AppConfig):
    name = "django_smtprelay"
    label = "django_smtprelay"
    verbose_name = _("Outbound mail")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Only registration here: checks and signal receivers.
        from . import checks  # noqa: F401
        from .tracking import receivers

        receivers.connect()
