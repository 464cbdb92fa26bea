"""One worker process for test_workers: ``python -m tests.health.worker SCENARIO ARGS_JSON``.

Each scenario says it is ready, reads the shared start time from stdin, waits
for it, hammers the breaker or the limiter for a bounded time or number of
tries, and prints a JSON result.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime, timedelta, timezone
from typing import Any


def wait_for(start: float) -> None:
    while time.time() < start:
        time.sleep(min(0.01, max(start - time.time(), 0)))


def probe(args: dict[str, Any]) -> dict[str, Any]:
    from django_smtprelay.health import BreakerPolicy, CircuitBreaker

    policy = BreakerPolicy(failure_threshold=args["threshold"], cooldown=timedelta(seconds=60))
    now = datetime.fromtimestamp(args["at"], tz=timezone.utc)
    wait_for(args["start"])
    wins = sum(CircuitBreaker(args["route"], policy).allow(now) for _ in range(args["tries"]))
    return {"wins": wins}


def rate(args: dict[str, Any]) -> dict[str, Any]:
    from django_smtprelay.health import RateLimiter, RateLimits

    limiter = RateLimiter(args["route"], RateLimits(per_second=args["per_second"]))
    granted: list[float] = []
    wait_for(args["start"])
    end = args["start"] + args["seconds"]
    for _ in range(200_000):
        now = datetime.now(timezone.utc)
        if now.timestamp() >= end:
            break
        wait = limiter.acquire(now)
        if wait == 0:
            granted.append(now.timestamp())
        else:
            time.sleep(min(wait, 0.002))
    return {"granted": granted}


def connections(args: dict[str, Any]) -> dict[str, Any]:
    import redis

    from django_smtprelay.health import RateLimiter, RateLimits

    limiter = RateLimiter(args["route"], RateLimits(max_connections=args["max_connections"]))
    witness = redis.Redis.from_url(os.environ["SMTPRELAY_HEALTH_WORKER_REDIS"])
    most = held = 0
    wait_for(args["start"])
    end = args["start"] + args["seconds"]
    for _ in range(100_000):
        if time.time() >= end:
            break
        slot = limiter.open_connection()
        if slot is None:
            time.sleep(0.001)
            continue
        try:
            most = max(most, witness.incr(args["witness"]))
            held += 1
            time.sleep(0.005)
            witness.decr(args["witness"])
        finally:
            limiter.close_connection(slot)
    return {"most": most, "held": held}


SCENARIOS = {"probe": probe, "rate": rate, "connections": connections}


if __name__ == "__main__":
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.health.worker_settings"
    import django

    django.setup()
    import django_smtprelay.health  # noqa: F401  (imported before the start, not inside the window)

    scenario, raw = sys.argv[1], sys.argv[2]
    args = json.loads(raw)
    # A barrier, not a fixed delay: on a loaded machine, setting Django up can
    # take longer than any delay chosen in advance. Say ready, then wait for the
    # shared start time from the test.
    print("ready", flush=True)
    args["start"] = float(sys.stdin.readline())
    print(json.dumps(SCENARIOS[scenario](args)))
