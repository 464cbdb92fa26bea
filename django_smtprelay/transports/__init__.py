"""Transports carry a message over one route: ``smtp``, ``anymail`` and ``mx``."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..routing import RouteSpec
    from .base import Transport


def get_transport(route: RouteSpec) -> Transport:
    """The transport for ``route``'s kind."""
    from .smtp import SMTPTransport

    if route.kind == "smtp":
        return SMTPTransport(route)
    if route.kind == "anymail":
        from .esp import ESPTransport

        return ESPTransport(route)
    if route.kind == "mx":
        from .mx import MXTransport

        return MXTransport(route)
    raise ValueError(f"Route {route.name!r} has kind {route.kind!r}, which has no transport.")
