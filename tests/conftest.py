"""Fixtures shared by the whole suite: real SMTP servers and their certificates."""

import os
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
    template = _sqlite_template()
    if template and template.exists():
        shutil.copyfile(template, name)


def _sqlite_template() -> Path | None:
    """``make mutate``'s migrated test database, copied by each mutant's session.

    Thousands of mutants each start a test session; migrating a new SQLite
    database is most of a short session's time. The first session (mutmut's
    run of the unmutated tests) leaves the template; later ones copy it.
    """
    template = os.environ.get("SMTPRELAY_TEST_SQLITE_TEMPLATE")
    return Path(template) if template else None


@pytest.fixture(scope="session")
def django_db_keepdb(request: pytest.FixtureRequest) -> bool:
    """A session that copied the template keeps it as it is: no new migration."""
    template = _sqlite_template()
    return bool(request.config.getvalue("reuse_db") or (template and template.exists()))


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """Leave the template for later sessions; remove a copy when its session ends."""
    from django.db import connections

    template = _sqlite_template()
    copied = None
    if template is not None:
        for alias in connections:
            if connections[alias].vendor != "sqlite":
                continue
            name = connections[alias].settings_dict["NAME"]
            if template.exists():
                copied = Path(name)
            else:
                with django_db_blocker.unblock():
                    partial = template.with_suffix(f".{os.getpid()}.partial")
                    with sqlite3.connect(name) as source, sqlite3.connect(partial) as target:
                        source.backup(target)
                    partial.replace(template)
    # Django 6's model checks (run by Celery's worker fixup and by run_checks())
    # ask every database whether it supports JSONField, which SQLite answers with
    # a query: asked here, while the session may still use the databases, so the
    # mirrored "relay" alias has its answer too.
    with django_db_blocker.unblock():
        for alias in connections:
            supported = connections[alias].features.supports_json_field
            assert supported, f"{alias} cannot hold a JSONField"
    yield
    if copied is not None:
        for alias in connections:
            connections[alias].close()
        copied.unlink(missing_ok=True)
