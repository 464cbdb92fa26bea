"""Fixtures for routes, settings and a real Celery worker."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker

from django_smtprelay.models import Route


def services_required() -> bool:
    """CI sets SMTPRELAY_TEST_REQUIRE_SERVICES=1: a missing service then fails the run."""
    return os.environ.get("SMTPRELAY_TEST_REQUIRE_SERVICES") == "1"


@pytest.fixture
def relay_settings(settings: Any) -> Callable[..., None]:
    """Change keys of ``SMTPRELAY`` for one test."""

    def update(**values: Any) -> None:
        settings.SMTPRELAY = {**settings.SMTPRELAY, **values}

    return update


@pytest.fixture
def trust_test_ca(relay_settings: Callable[..., None], tls_certs: Any) -> None:
    """Make the test CA the bundle that relay certificates are verified against."""
    relay_settings(TLS_CA_FILE=str(tls_certs.ca_file))


@pytest.fixture
def make_route(db: None) -> Callable[..., Route]:
    """``make_route(server, **fields)``: a Route pointing at a test server."""
    counter = iter(range(1, 10_000))

    def make(server: Any = None, *, port: int | None = None, **fields: Any) -> Route:
        number = next(counter)
        password = fields.pop("password", "")
        values: dict[str, Any] = {
            "name": f"route-{number}",
            "host": "127.0.0.1",
            "port": port if port is not None else server.port,
            "security": Route.Security.NONE,
            "priority": number * 10,
            "timeout": 5.0,
        }
        values.update(fields)
        route = Route(**values)
        route.password = password
        route.save()
        return route

    return make


@pytest.fixture(scope="session")
def celery_app_for_tests() -> Any:
    from tests.celery_app import app

    app.set_default()
    return app


@pytest.fixture
def celery_worker(celery_app_for_tests: Any, transactional_db: None) -> Iterator[Any]:
    """A real Celery worker (solo pool, in a thread) consuming from the configured broker."""
    with start_worker(
        celery_app_for_tests,
        pool="solo",
        perform_ping_check=False,
        shutdown_timeout=10,
        loglevel="WARNING",
    ) as worker:
        yield worker


@pytest.fixture(autouse=True)
def queued_email_backend(settings: Any) -> None:
    """Django's test runner swaps in the locmem backend; the suite tests ours."""
    settings.EMAIL_BACKEND = "django_smtprelay.backends.QueuedEmailBackend"


@pytest.fixture(autouse=True)
def fresh_caches() -> Iterator[None]:
    """Route health lives in the cache: each test starts with none, and with no
    sending domain remembered as recorded (a flushed table forgets them)."""
    from django.core.cache import caches

    from django_smtprelay.models import store

    for cache in caches.all():
        cache.clear()
    store.forget_domains()
    yield
