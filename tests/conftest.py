"""Fixtures shared by the whole suite: real SMTP servers and their certificates."""

import os
from pathlib import Path

import pytest

from tests.fixtures import (  # noqa: F401
    celery_app_for_tests,
    celery_worker,
    fresh_caches,
    make_route,
    queued_email_backend,
    relay_settings,
    trust_test_ca,
)
from tests.smtpserver import refused_port, smtp_server  # noqa: F401
from tests.tlscerts import tls_certs  # noqa: F401


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix: None) -> None:
    """One SQLite test database per process, named when the session starts.

    ``tests/settings.py`` names it by the pid that read the settings; ``make mutate``
    runs each mutant's tests in a process forked from one that already had, two at
    a time, and two sessions on one file delete each other's tables.
    """
    from django.db import connections

    name = str(Path(__file__).parent / f"test-{os.getpid()}.sqlite3")
    for alias in connections:
        settings_dict = connections[alias].settings_dict
        if settings_dict["ENGINE"] == "django.db.backends.sqlite3":
            settings_dict["TEST"]["NAME"] = name
