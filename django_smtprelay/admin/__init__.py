"""The control room: the Django admin for the queue, routes and domains."""

from . import domains, events, health, messages, recipients, routes, suppressions  # noqa: F401
