"""The queue's fast paths: the collector paused for a batch, indexes a queued row skips."""

from __future__ import annotations

import gc
import uuid

import pytest
from django.core.mail import EmailMessage, get_connection
from django.db import connection

from django_smtprelay import backends
from django_smtprelay.exceptions import InvalidMessageError
from django_smtprelay.models import Message, Recipient


def _batch(count: int) -> list[EmailMessage]:
    return [
        EmailMessage(f"S{i}", "B", "from@example.com", [f"r{i}@example.com"]) for i in range(count)
    ]


@pytest.fixture
def collector_seen(monkeypatch) -> list[bool]:
    """Whether the collector ran while each message was prepared."""
    seen: list[bool] = []
    prepare = backends.prepare

    def watched(message: EmailMessage):  # type: ignore[no-untyped-def]
        seen.append(gc.isenabled())
        return prepare(message)

    monkeypatch.setattr(backends, "prepare", watched)
    return seen


@pytest.mark.django_db
def test_a_batch_is_prepared_with_the_collector_paused_and_it_runs_again_after(
    collector_seen: list[bool],
) -> None:
    assert gc.isenabled()
    count = backends._PAUSE_COLLECTOR_FROM
    assert get_connection().send_messages(_batch(count)) == count
    assert collector_seen == [False] * count
    assert gc.isenabled()
    collector_seen.clear()
    assert get_connection().send_messages(_batch(1)) == 1  # one message: nothing to pause
    assert collector_seen == [True]


@pytest.mark.django_db
def test_the_collector_runs_again_after_a_refused_batch(collector_seen: list[bool]) -> None:
    batch = _batch(backends._PAUSE_COLLECTOR_FROM)
    batch[-1].to = ["not an address"]
    with pytest.raises(InvalidMessageError):
        get_connection().send_messages(batch)
    assert not any(collector_seen)
    assert gc.isenabled()
    assert Message.objects.count() == 0


@pytest.mark.django_db
def test_a_collector_paused_by_the_site_stays_paused(collector_seen: list[bool]) -> None:
    gc.disable()
    try:
        get_connection().send_messages(_batch(backends._PAUSE_COLLECTOR_FROM))
        assert not gc.isenabled()
    finally:
        gc.enable()


def _plan(queryset) -> str:  # type: ignore[no-untyped-def]
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
        return " ".join(str(row) for row in cursor.fetchall())


@pytest.mark.django_db
def test_lookups_by_lease_and_by_route_use_their_partial_indexes() -> None:
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's query plan is checked; PostgreSQL's depends on its statistics")
    # Queued rows have neither (so queueing writes no entry); a lookup by
    # either value implies it is set, so the partial index serves it.
    assert "smtprelay_msg_leased" in _plan(Message.objects.filter(lease_token=uuid.uuid4()))
    assert "smtprelay_rcpt_route" in _plan(Recipient.objects.filter(route_id=1))


def test_overlapping_batches_turn_the_collector_on_only_when_the_last_ends() -> None:
    """Two request threads storing batches at once: the first to finish must not
    turn the collector back on under the other."""
    import gc

    from django_smtprelay.backends import _collector_paused

    assert gc.isenabled()
    first, second = _collector_paused(), _collector_paused()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert not gc.isenabled()
    second.__exit__(None, None, None)
    assert gc.isenabled()
