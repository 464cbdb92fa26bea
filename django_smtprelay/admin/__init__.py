"""The control room: the Django admin for the queue, routes and domains."""

from . import domains, messages, routes, suppressions  # noqa: F401
