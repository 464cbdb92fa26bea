"""The control room: the Django admin for the queue, routes and domains."""

from . import (  # noqa: F401
    domains,
    events,
    health,
    messages,
    recipients,
    routes,
    submission,
    suppressions,
)
