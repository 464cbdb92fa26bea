"""Outbound email for Django: a durable queue, relay routes with failover."""

__version__ = "0.1.0.dev0"
