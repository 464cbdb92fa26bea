"""The control room: the Django admin for the queue, routes and domains."""

from . import health, messages, routes, suppressions  # noqa: F401
