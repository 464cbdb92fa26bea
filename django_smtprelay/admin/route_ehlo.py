"""The EHLO name panel on a direct-to-MX route's page (see domains.ehlo)."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from ..domains.ehlo import EHLOCheck, check_ehlo, effective_ehlo_name, single_addresses
from ..exceptions import SMTPRelayError
from ..models import Route


def ehlo_panel(route: Route) -> EHLOCheck | None:
    """The check for a direct-to-MX route (None for other kinds: a relay's own
    name is what receivers see there)."""
    if route.kind != Route.Kind.MX:
        return None
    name = effective_ehlo_name(route.ehlo_hostname)
    try:
        return check_ehlo(name, single_addresses(route.sending_networks()))
    except (SMTPRelayError, ImproperlyConfigured) as exc:
        result = EHLOCheck(name)
        result.unknown(f"The check could not run: {exc}")
        return result
