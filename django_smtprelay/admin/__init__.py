"""The control room: the Django admin for the queue, routes and domains."""
