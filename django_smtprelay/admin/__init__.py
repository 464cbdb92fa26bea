"""The control room: the Django admin for the queue, routes and domains."""

from . import domains, health, messages, routes, suppressions  # noqa: F401
