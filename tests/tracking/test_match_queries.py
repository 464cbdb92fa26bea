"""The statements that match a webhook's event to its recipient, as the database runs them."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

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
