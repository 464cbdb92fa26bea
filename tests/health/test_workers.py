"""The breaker and the limiter hold across real worker processes sharing Redis.

Four processes start at the same instant and compete; each reports what it
got, and the totals must obey the limits. These tests need Redis (see
conftest) and sleep only inside the workers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from django_smtprelay.health import BreakerPolicy, CircuitBreaker
from django_smtprelay.models import RouteHealth
from tests.health.conftest import REDIS_URL, T0

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

WORKERS = 4
ROOT = Path(__file__).resolve().parents[2]


def run_workers(scenario: str, **args: Any) -> list[dict[str, Any]]:
    """Run WORKERS processes of ``scenario`` that start together; their JSON results."""
    db = {k: connection.settings_dict[k] for k in ("ENGINE", "NAME", "HOST", "PORT", "USER")}
    db.update(PASSWORD=connection.settings_dict["PASSWORD"], OPTIONS={"timeout": 30})
    if db["ENGINE"].endswith("postgresql"):
        db["OPTIONS"] = {}
    env = {
        **os.environ,
        "SMTPRELAY_HEALTH_WORKER_DB": json.dumps(db),
        "SMTPRELAY_HEALTH_WORKER_REDIS": REDIS_URL,
        "PYTHONPATH": str(ROOT),
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.health.worker", scenario, json.dumps(args)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(WORKERS)
    ]
    # Every process has set Django up before the shared start time is chosen.
    for proc in procs:
        line = proc.stdout.readline()
        assert line.strip() == "ready", (line, proc.stderr.read() if proc.poll() else "")
    start = time.time() + 0.3
    results = []
    for proc in procs:
        proc.stdin.write(f"{start}\n")
        proc.stdin.flush()
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def test_after_the_cooldown_exactly_one_process_gets_the_probe(redis_cache):
    policy = BreakerPolicy(failure_threshold=3, cooldown=timedelta(seconds=60))
    breaker = CircuitBreaker("relay", policy)
    for i in range(3):
        breaker.record_fault("connection refused", T0 + timedelta(seconds=i))
    until = breaker.state().until
    results = run_workers(
        "probe", route="relay", threshold=3, at=(until + timedelta(seconds=1)).timestamp(), tries=50
    )
    assert sorted(r["wins"] for r in results) == [0, 0, 0, 1]
    assert RouteHealth.objects.get(route_name="relay").state == "half_open"


def test_a_per_second_limit_holds_across_processes(redis_cache):
    per_second = 25
    results = run_workers("rate", route="relay", per_second=per_second, seconds=2.0)
    granted = [ts for r in results for ts in r["granted"]]
    per_window = Counter(int(ts) for ts in granted)
    assert max(per_window.values()) <= per_second, per_window
    assert len(granted) >= per_second, "the limiter should still let traffic through"
    assert sum(bool(r["granted"]) for r in results) >= 2, "more than one process was served"


def test_the_connection_cap_holds_across_processes(redis_cache):
    witness = f"smtprelay-test-witness-{uuid.uuid4().hex}"
    results = run_workers(
        "connections", route="relay", max_connections=2, seconds=2.0, witness=witness
    )
    assert max(r["most"] for r in results) == 2, results
    assert sum(r["held"] for r in results) > 20
