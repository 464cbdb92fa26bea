"""Fixtures for ESP routes: ESP-like APIs on 127.0.0.1 and routes that use them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from django_smtprelay.models import Route
from tests.espserver import ESPServer, route_options

# The ESPs the suite drives over real HTTP (boto3 comes with the test extra).
FLAVOURS = ("postmark", "mailgun", "sendgrid", "resend", "amazon_ses")


@pytest.fixture
def esp_server() -> Iterator[Callable[[str], ESPServer]]:
    """``esp_server("postmark")``: a started ESP-like API, stopped after the test."""
    servers: list[ESPServer] = []

    def start(flavour: str) -> ESPServer:
        server = ESPServer(flavour).__enter__()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.__exit__(None, None, None)


@pytest.fixture
def make_esp_route(db: None) -> Callable[..., Route]:
    """``make_esp_route(server, **fields)``: an anymail route to an ESP-like server."""
    counter = iter(range(1, 10_000))

    def make(server: ESPServer, *, options: dict[str, Any] | None = None, **fields: Any) -> Route:
        number = next(counter)
        values: dict[str, Any] = {
            "name": f"esp-{server.flavour}-{number}",
            "kind": Route.Kind.ANYMAIL,
            "esp": server.flavour,
            "priority": number * 10,
            "timeout": 5.0,
        }
        values.update(fields)
        opts = route_options(server.flavour, server) if options is None else options
        return Route.objects.create(esp_options=opts, **values)

    return make
