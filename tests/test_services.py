"""PostgreSQL and a real broker: skipped on a laptop, required in CI.

CI runs the whole suite a second time with::

    SMTPRELAY_TEST_DATABASE=postgres SMTPRELAY_TEST_BROKER=redis://127.0.0.1:6379/15 \\
    SMTPRELAY_TEST_REQUIRE_SERVICES=1 make test

and there a missing service fails the run instead of skipping.
"""

from __future__ import annotations

import os
import threading
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.mail import send_mass_mail
from django.db import close_old_connections, connection

from django_smtprelay.models import Message
from tests.fixtures import services_required

ENABLE = (
    "set SMTPRELAY_TEST_DATABASE=postgres and SMTPRELAY_TEST_BROKER=redis://127.0.0.1:6379/15 "
    "(PostgreSQL on 127.0.0.1:5432 with a 'test' database, Redis on 6379) to run this"
)


def require(condition: bool, what: str) -> None:
    if condition:
        return
    if services_required():
        pytest.fail(f"SMTPRELAY_TEST_REQUIRE_SERVICES=1 but {what} is not configured")
    pytest.skip(f"{what} not configured: {ENABLE}")


@pytest.mark.django_db
def test_the_suite_runs_on_postgresql_when_asked():
    require(os.environ.get("SMTPRELAY_TEST_DATABASE") == "postgres", "PostgreSQL")
    assert connection.vendor == "postgresql"
    assert connection.features.has_select_for_update_skip_locked


def test_the_broker_is_reachable_when_configured(celery_app_for_tests):
    require(not settings.CELERY_BROKER_URL.startswith("memory://"), "a real broker")
    with celery_app_for_tests.connection_for_write() as conn:
        conn.ensure_connection(max_retries=2, interval_start=0.2)
        assert conn.connected


@pytest.mark.django_db(transaction=True)
def test_skip_locked_claims_split_the_queue_between_concurrent_claimers():
    require(connection.vendor == "postgresql", "PostgreSQL")
    send_mass_mail([(f"S{i}", "B", "f@example.com", [f"t{i}@example.com"]) for i in range(200)])
    results: list[list[int]] = []
    barrier = threading.Barrier(4)

    def claim() -> None:
        try:
            barrier.wait()
            mine: list[int] = []
            while True:
                _token, ids = Message.objects.claim(9, timedelta(minutes=5))
                if not ids:
                    break
                mine.extend(ids)
            results.append(mine)
        finally:
            close_old_connections()

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    claimed = [pk for r in results for pk in r]
    assert len(claimed) == 200
    assert len(set(claimed)) == 200, "a message was claimed twice"


@pytest.mark.django_db(transaction=True)
def test_a_claim_skips_a_row_another_transaction_holds_instead_of_waiting_for_it():
    require(connection.vendor == "postgresql", "PostgreSQL")
    import time

    from django.db import transaction

    send_mass_mail([(f"S{i}", "B", "f@example.com", [f"t{i}@example.com"]) for i in range(2)])
    first, second = Message.objects.order_by("pk").values_list("pk", flat=True)
    locked, release = threading.Event(), threading.Event()

    def hold_the_first_row() -> None:
        # Another worker in the middle of its claim: the row is locked, not yet marked.
        try:
            with transaction.atomic():
                list(Message.objects.select_for_update().filter(pk=first))
                locked.set()
                release.wait(10)
        finally:
            close_old_connections()

    holder = threading.Thread(target=hold_the_first_row)
    holder.start()
    try:
        assert locked.wait(10)
        started = time.monotonic()
        claim = Message.objects.claim(1, timedelta(minutes=5))
        took = time.monotonic() - started
    finally:
        release.set()
        holder.join(15)
    assert claim.ids == [second]
    assert took < 5, f"the claim waited {took:.1f}s for the locked row"
    assert Message.objects.get(pk=first).status == Message.Status.QUEUED
