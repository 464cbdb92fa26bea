"""The circuit breaker: when it opens, the one probe, and where its state lives."""

from datetime import timedelta

import pytest

from django_smtprelay.health import BreakerPolicy, CircuitBreaker
from django_smtprelay.health.circuit import close_now
from django_smtprelay.models import RouteHealth
from tests.health.conftest import T0

pytestmark = pytest.mark.django_db

POLICY = BreakerPolicy(
    failure_threshold=5,
    error_rate=0.5,
    window=timedelta(minutes=5),
    min_volume=20,
    cooldown=timedelta(minutes=2),
    max_cooldown=timedelta(minutes=5),
    probe_timeout=timedelta(minutes=3),
)
S = timedelta(seconds=1)


def opened(breaker, at=T0, faults=5):
    for i in range(faults):
        breaker.record_fault("connection refused", at + i * S)
    return at + (faults - 1) * S


def test_a_closed_circuit_allows_and_four_faults_do_not_open_it(health_cache):
    breaker = CircuitBreaker("relay", POLICY)
    opened(breaker, faults=4)
    assert breaker.allow(T0 + 10 * S)
    assert breaker.state().state == "closed"
    assert breaker.state().consecutive_faults == 4
    assert not RouteHealth.objects.exists(), "no database write before a transition"


def test_five_faults_in_a_row_open_it_with_the_reason(health_cache):
    breaker = CircuitBreaker("relay", POLICY)
    at = opened(breaker)
    state = breaker.state()
    assert state.state == "open"
    assert state.until == at + timedelta(minutes=2)
    assert "5 route faults in a row" in state.reason and "connection refused" in state.reason
    row = RouteHealth.objects.get(route_name="relay")
    assert (row.state, row.open_until, row.consecutive_faults) == ("open", state.until, 5)
    assert not breaker.allow(at + timedelta(minutes=1))


def test_a_success_breaks_the_run_of_faults(health_cache):
    breaker = CircuitBreaker("relay", POLICY)
    opened(breaker, faults=4)
    breaker.record_success(T0 + 5 * S)
    opened(breaker, at=T0 + 6 * S, faults=4)
    assert breaker.state().state == "closed"


def test_an_error_rate_over_the_window_opens_it(health_cache):
    breaker = CircuitBreaker("relay", BreakerPolicy(failure_threshold=100, min_volume=20))
    for i in range(10):
        breaker.record_success(T0 + 2 * i * S)
        assert breaker.state().state == "closed"
        breaker.record_fault("454 TLS not available", T0 + (2 * i + 1) * S)
    state = breaker.state()
    assert state.state == "open"
    assert "10 of 20 sends were route faults (50%) in the last 5 min" in state.reason


def test_the_error_rate_needs_the_minimum_volume(health_cache):
    breaker = CircuitBreaker("relay", BreakerPolicy(failure_threshold=100, min_volume=20))
    for i in range(9):
        breaker.record_fault("timeout", T0 + 2 * i * S)
        breaker.record_success(T0 + (2 * i + 1) * S)
    assert breaker.state().state == "closed"


def test_after_the_cooldown_one_probe_then_a_success_closes_it(health_cache):
    breaker = CircuitBreaker("relay", POLICY)
    at = opened(breaker)
    probe_time = at + timedelta(minutes=2)
    assert not breaker.allow(probe_time - S)
    assert breaker.allow(probe_time)
    assert not breaker.allow(probe_time + S), "only one probe"
    assert not CircuitBreaker("relay", POLICY).allow(probe_time + 2 * S)
    assert RouteHealth.objects.get(route_name="relay").state == "half_open"
    breaker.record_success(probe_time + 3 * S)
    assert breaker.state().state == "closed"
    assert breaker.allow(probe_time + 4 * S)
    row = RouteHealth.objects.get(route_name="relay")
    assert row.state == "closed" and "probe succeeded" in row.reason
    # The faults before it no longer count toward the next opening.
    opened(breaker, at=probe_time + 5 * S, faults=4)
    assert breaker.state().state == "closed"


def test_a_failed_probe_doubles_the_cooldown_up_to_the_cap(health_cache):
    breaker = CircuitBreaker("relay", POLICY)
    at = opened(breaker)
    cooldowns = []
    for _ in range(3):
        at = breaker.state().until
        assert breaker.allow(at)
        breaker.record_fault("still refused", at + S)
        state = breaker.state()
        assert state.state == "open" and state.reason == "probe failed: still refused"
        cooldowns.append(state.until - (at + S))
    assert cooldowns == [timedelta(minutes=4), timedelta(minutes=5), timedelta(minutes=5)]


def test_a_lost_probe_is_replaced_after_the_probe_timeout(health_cache):
    breaker = CircuitBreaker("relay", POLICY)
    until = opened(breaker) + timedelta(minutes=2)
    assert breaker.allow(until)
    assert not breaker.allow(until + timedelta(minutes=2))
    assert breaker.allow(until + timedelta(minutes=3))
    assert not breaker.allow(until + timedelta(minutes=3, seconds=1))


def test_faults_while_open_change_nothing(health_cache):
    breaker = CircuitBreaker("relay", POLICY)
    at = opened(breaker)
    until = breaker.state().until
    breaker.record_fault("late result of a session that began earlier", at + 10 * S)
    breaker.record_success(at + 11 * S)
    assert breaker.state().until == until and breaker.state().state == "open"


def test_the_state_survives_a_restart_through_the_database(health_cache):
    breaker = CircuitBreaker("relay", POLICY)
    at = opened(breaker)
    health_cache.clear()  # a new process with an empty per-process cache, or Redis restarted
    fresh = CircuitBreaker("relay", POLICY)
    assert fresh.state().state == "open"
    assert not fresh.allow(at + timedelta(minutes=1))
    assert fresh.allow(at + timedelta(minutes=2))


def test_close_now_closes_for_every_worker(health_cache):
    breaker = CircuitBreaker("relay", POLICY)
    at = opened(breaker)
    assert close_now(["relay", "unknown"], "closed by admin", at + S) == 1
    assert breaker.allow(at + 2 * S)
    assert breaker.state().consecutive_faults == 0
    assert RouteHealth.objects.get(route_name="relay").reason == "closed by admin"


def test_policy_comes_from_settings(relay_settings):
    relay_settings(BREAKER_FAILURE_THRESHOLD=2, BREAKER_COOLDOWN_SECONDS=30)
    policy = CircuitBreaker("relay").policy
    assert policy.failure_threshold == 2 and policy.cooldown == timedelta(seconds=30)


def test_a_group_kept_off_a_route_is_told_until_when_or_that_a_probe_is_under_way():
    from django.utils import timezone

    from django_smtprelay.delivery.session import _circuit_open
    from django_smtprelay.health.circuit import BreakerState

    until = T0 + timedelta(minutes=5)
    state = BreakerState(state="open", until=until, reason="5 faults in a row")
    assert _circuit_open(state, T0) == (
        f"circuit open until {timezone.localtime(until):%H:%M:%S %Z} (5 faults in a row)"
    )
    # From the end of the cool-down on, one worker probes and the others wait.
    for ended in (until, None):
        state = BreakerState(state="open", until=ended, reason="probe")
        assert _circuit_open(state, until) == (
            "circuit half-open, another worker is probing it (probe)"
        )
