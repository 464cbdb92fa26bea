"""Health scores: worse routes get less traffic, never none, and win it back."""

from datetime import timedelta

import pytest

from django_smtprelay.health import HealthScores
from django_smtprelay.health.score import FLOOR
from django_smtprelay.models import RouteHealth
from tests.health.conftest import T0

pytestmark = pytest.mark.django_db


def feed(scores, route, sends, ok, latency=0.1, now=T0):
    for i in range(sends):
        scores.record(route, i < ok, latency, now)


def test_too_few_sends_score_as_healthy(health_cache):
    scores = HealthScores()
    feed(scores, "a", 5, 0)
    feed(scores, "b", 100, 100)
    result = scores.scores(["a", "b"], T0)
    assert result["a"].score == 1.0 and "too few" in result["a"].reason


def test_a_route_failing_more_than_its_peers_scores_lower_and_says_why(health_cache):
    scores = HealthScores()
    feed(scores, "a", 100, 62)
    feed(scores, "b", 100, 99)
    feed(scores, "c", 100, 99)
    result = scores.scores(["a", "b", "c"], T0)
    assert result["a"].score == pytest.approx((0.62 / 0.99) ** 2, abs=0.001)
    assert result["a"].reason == "success 62% vs peers 99%"
    assert result["b"].score == 1.0 and result["b"].reason.startswith("on par with peers")


def test_a_slow_route_scores_lower(health_cache):
    scores = HealthScores()
    feed(scores, "slow", 50, 50, latency=2.0)
    feed(scores, "fast", 50, 50, latency=0.2)
    result = scores.scores(["slow", "fast"], T0)
    assert result["slow"].score < 0.2
    assert result["slow"].reason == "latency 2000 ms vs peers 200 ms"
    assert result["fast"].score == 1.0


def test_small_latency_differences_cost_nothing(health_cache):
    scores = HealthScores()
    feed(scores, "a", 50, 50, latency=0.015)
    feed(scores, "b", 50, 50, latency=0.005)
    assert scores.scores(["a", "b"], T0)["a"].score == 1.0


def test_a_lone_route_has_no_peers(health_cache):
    scores = HealthScores()
    feed(scores, "a", 50, 10)
    result = scores.scores(["a"], T0)["a"]
    assert result.score == 1.0 and "no peer" in result.reason and "success 20%" in result.reason


def test_weights_shift_traffic_but_keep_a_floor(health_cache):
    scores = HealthScores()
    feed(scores, "bad", 100, 5)
    feed(scores, "good", 100, 100)
    feed(scores, "fine", 100, 99)
    shares = scores.weights(["bad", "good", "fine"], now=T0)
    assert sum(shares.values()) == pytest.approx(1)
    assert shares["bad"] == pytest.approx(FLOOR)
    assert shares["good"] == pytest.approx(shares["fine"]) == pytest.approx(0.475)


def test_base_weights_count_and_zero_means_none(health_cache):
    scores = HealthScores()
    shares = scores.weights(["a", "b", "c"], {"a": 3, "b": 1, "c": 0}, now=T0)
    assert shares == pytest.approx({"a": 0.75, "b": 0.25, "c": 0.0})


def test_equal_routes_share_equally(health_cache):
    shares = HealthScores().weights(["a", "b"], now=T0)
    assert shares == pytest.approx({"a": 0.5, "b": 0.5})


def test_a_route_wins_its_share_back_as_it_recovers(health_cache):
    scores = HealthScores()
    feed(scores, "a", 100, 20)
    feed(scores, "b", 100, 100)
    assert scores.scores(["a", "b"], T0)["a"].score < 0.1
    later = T0 + timedelta(minutes=6)  # the bad minutes have left the window
    feed(scores, "a", 100, 100, now=later)
    feed(scores, "b", 100, 100, now=later)
    assert scores.scores(["a", "b"], later)["a"].score == 1.0


def test_scores_are_written_for_the_admin_but_not_on_every_call(health_cache):
    scores = HealthScores()
    feed(scores, "a", 100, 62)
    feed(scores, "b", 100, 99)
    scores.scores(["a", "b"], T0)
    row = RouteHealth.objects.get(route_name="a")
    assert row.score == pytest.approx(0.392, abs=0.001)
    assert row.score_reason == "success 62% vs peers 99%"
    feed(scores, "a", 500, 500)
    scores.scores(["a", "b"], T0)
    HealthScores().scores(["a", "b"], T0)  # another worker
    assert RouteHealth.objects.get(route_name="a").score == row.score
