"""The statements that match a webhook's event to its recipient, as the database runs them."""

from __future__ import annotations

from datetime import datetime
from datetime import timezone as dt_timezone
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from django_smtprelay.models import Recipient
from django_smtprelay.tracking import store

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("esp", ["postmark", ""])
def test_the_match_by_provider_id_reads_the_partial_index(esp, esp_route, accepted):
    """Not a scan of every recipient the route ever sent (one per event, at any size)."""
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's plan: PostgreSQL chooses by its statistics")
    route = esp_route("postmark")
    accepted(route, ["ann@example.net"], provider_id="pm-1")
    with CaptureQueriesContext(connection) as captured:
        rows = store.by_provider_id(["pm-1", "<pm-1>"], esp)
    assert [address for _pk, address, _m in rows] == ["ann@example.net"]
    assert len(captured.captured_queries) == 1
    sql = store._provider_id_sql(connection.alias, 2, bool(esp))
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN QUERY PLAN {sql}", ["pm-1", "<pm-1>", *([esp] if esp else [])])
        plan = " | ".join(str(row[-1]) for row in cursor.fetchall())
    assert "smtprelay_rcpt_provider_id" in plan, plan


def _work(route: Any, events: list[Any]) -> list[Any]:
    """The work anymail's ``tracking`` signal leaves for a post's events to the route."""
    from django_smtprelay.tracking import receivers
    from django_smtprelay.tracking.context import current_route, pending_work

    work: list[Any] = []
    tokens = current_route.set(store.webhook_route(route.name)), pending_work.set(work)
    try:
        for event in events:
            receivers.on_tracking(None, event=event, esp_name="Postmark")
    finally:
        pending_work.reset(tokens[1])
        current_route.reset(tokens[0])
    return work


@pytest.mark.django_db(transaction=True)
def test_a_group_reads_its_events_matches_at_once_and_applies_each_as_alone(esp_route, accepted):
    """Posts committed together: each event matched by the provider's id, our id or
    the Message-ID, duplicates (recorded before, or twice in the group) recorded
    once, a bounce failing its recipient, an unknown id counted; and the reads
    for the whole group in a few statements, not a few per event."""
    from anymail.signals import AnymailTrackingEvent

    from django_smtprelay.tracking import esp_metadata, group
    from django_smtprelay.tracking.apply import unmatched_count

    route = esp_route("postmark")
    ann = accepted(route, ["ann@example.net"], provider_id="pm-ann").recipients.get()
    bob = accepted(route, ["bob@example.net"], provider_id="pm-bob").recipients.get()
    cy_message = accepted(route, ["cy@example.net"])
    cy = cy_message.recipients.get()
    _metadata, merge = esp_metadata(cy_message.pk, [(cy.pk, cy.address)])
    dee_message = accepted(route, ["dee@example.net"])
    old = accepted(route, ["old@example.net"], provider_id="pm-old").recipients.get()
    at = datetime(2026, 11, 30, 10, 0, tzinfo=dt_timezone.utc)

    def event(kind: str, message_id: str, recipient: str, **extra: Any) -> Any:
        return AnymailTrackingEvent(
            event_type=kind,
            message_id=message_id,
            recipient=recipient,
            timestamp=at,
            event_id=extra.pop("event_id", None),
            metadata=extra.pop("metadata", {}),
            esp_event={},
            **extra,
        )

    delivered_ann = event("delivered", "pm-ann", "ann@example.net")
    _apply_now(route, [event("delivered", "pm-old", "old@example.net")])
    posts = [
        group.Post(_work(route, [delivered_ann])),
        group.Post(_work(route, [event("bounced", "pm-bob", "bob@example.net")])),
        group.Post(
            _work(route, [event("delivered", "", "cy@example.net", metadata=merge[cy.address])])
        ),
        group.Post(_work(route, [event("delivered", dee_message.message_id, "dee@example.net")])),
        group.Post(_work(route, [event("delivered", "no-such-id", "x@example.net")])),
        group.Post(_work(route, [delivered_ann])),  # posted twice, in the same group
        group.Post(_work(route, [event("delivered", "pm-old", "old@example.net")])),
    ]
    with CaptureQueriesContext(connection) as captured:
        group._apply(posts)
    assert [p.error for p in posts] == [None] * len(posts)
    counts = {r.address: r.events.count() for r in Recipient.objects.all()}
    assert counts == dict.fromkeys(
        [
            "ann@example.net",
            "bob@example.net",
            "cy@example.net",
            "dee@example.net",
            "old@example.net",
        ],
        1,
    )
    bob.refresh_from_db()
    ann.refresh_from_db()
    assert (bob.status, ann.status) == (Recipient.Status.FAILED, Recipient.Status.DELIVERED)
    assert unmatched_count(route.pk) == 1
    assert old.events.count() == 1
    # The events already recorded: read once for the group, not once an event.
    sqls = [q["sql"] for q in captured.captured_queries]
    reads = [sql for sql in sqls if sql.startswith("SELECT") and "_recipientevent" in sql]
    assert len(reads) == 1, reads
    # The group's transaction and its three reads, an insert for each event not
    # recorded before, the Message-ID's fallback and the bounce's writes: 19 on
    # SQLite. Before, 39: a match and a read of the key for every event, and a
    # savepoint and its release for every post.
    assert len(sqls) <= 19, sqls


def _apply_now(route: Any, events: list[Any]) -> None:
    from django_smtprelay.tracking import group

    post = group.Post(_work(route, events))
    group._apply([post])
    assert post.error is None
