"""Several worker processes drain one queue at once: each message reaches the relay once."""

from __future__ import annotations

import pytest

from django_smtprelay.models import DeliveryAttempt, Message
from tests.faults.harness import add_route, delivered, queue, reliability, statuses

pytestmark = [pytest.mark.slow, pytest.mark.services, pytest.mark.django_db(transaction=True)]

WORKERS = 4
MESSAGES = 3000


def test_concurrent_workers_deliver_each_message_exactly_once(smtp_server, workers):
    relay = smtp_server()
    add_route(relay)
    by_id = queue(MESSAGES, "concurrent")
    # Small batches, so the four claim side by side many times over.
    started = [workers.start(BATCH_SIZE=100, FLUSH_EVERY=50) for _ in range(WORKERS)]
    results = [w.finish(timeout=90) for w in started]
    for worker, result in zip(started, results, strict=True):
        assert result["returncode"] == 0, (result, worker.stderr())
    claimed = [w.claimed(r) for w, r in zip(started, results, strict=True)]

    counts = delivered(relay)
    twice = {mid: n for mid, n in counts.items() if n > 1}
    assert not twice, f"{len(twice)} messages delivered more than once: {list(twice)[:10]}"
    assert set(counts) == set(by_id), "the relay's log and the queue differ"
    assert statuses() == {Message.Status.SENT: MESSAGES}
    assert DeliveryAttempt.objects.count() == MESSAGES, "one attempt per message, no more"
    assert sum(claimed) == MESSAGES
    assert sum(n > 0 for n in claimed) >= 2, f"the drain was not shared: claimed {claimed}"
    reliability(
        "concurrent-workers",
        workers=WORKERS,
        messages=MESSAGES,
        delivered=sum(counts.values()),
        duplicates=len(twice),
        claimed_per_worker="/".join(map(str, claimed)),
    )
