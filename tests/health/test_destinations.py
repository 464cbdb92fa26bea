"""Destination-aware routing: groups from MX records, health per route and group,
shares of each group's traffic, per-group circuits, and the choice on each attempt."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

import pytest

from django_smtprelay.health import RouteHealthService
from django_smtprelay.health.destination_overview import destination_overview
from django_smtprelay.health.destinations import PROVIDERS, DestinationGroups, provider_for
from django_smtprelay.health.per_destination import PROBE_SHARE
from django_smtprelay.models import DeliveryAttempt, RouteHealth
from django_smtprelay.routing import RouteSpec
from tests.destination_sim import PROVIDERS as SIM_PROVIDERS
from tests.destination_sim import ZONE, simulate
from tests.dnsserver import DNSServer

NOW = datetime(2026, 3, 2, 12, 0, 5, tzinfo=UTC)


@pytest.fixture
def dns(relay_settings):
    server = DNSServer(
        {
            "sim.test.": ZONE
            + "\nodd 3600 IN MX 10 mail.odd.test.\nnomx 3600 IN A 127.0.0.1\nslow 3600 IN A 1.2.3.4"
        }
    ).start()
    relay_settings(
        DNS_NAMESERVERS=[server.address],
        DESTINATION_PROVIDERS=SIM_PROVIDERS,
        DESTINATION_MX_TIMEOUT=0.3,
    )
    yield server
    server.stop()


def spec(name: str, priority: int = 10, weight: int = 1) -> RouteSpec:
    return RouteSpec(name=name, host="127.0.0.1", port=1, priority=priority, weight=weight)


def test_provider_from_mx_host_suffixes():
    assert provider_for(["alt1.gmail-smtp-in.l.google.com"], PROVIDERS) == "google"
    assert provider_for(["acme-com.mail.protection.outlook.com."], PROVIDERS) == "microsoft"
    assert provider_for(["mx.small.example", "aspmx.l.google.com"], PROVIDERS) == "google"
    assert provider_for(["mx.small.example"], PROVIDERS) is None
    # A suffix matches whole labels only.
    assert provider_for(["notgoogle.com"], PROVIDERS) is None


def test_the_site_extends_the_provider_table(relay_settings):
    relay_settings(DESTINATION_PROVIDERS={"mx.example.net": "example"})
    from django_smtprelay.health.destinations import providers

    table = providers()
    assert table["mx.example.net"] == "example"
    assert table["google.com"] == "google"
    relay_settings(DESTINATION_PROVIDERS={"": "x"})
    with pytest.raises(Exception, match="DESTINATION_PROVIDERS"):
        providers()


@pytest.mark.django_db
def test_groups_come_from_mx_records_and_are_cached(dns):
    groups = DestinationGroups()
    assert groups.group("X1.sim.test") == "xmail"
    assert groups.group("y2.sim.test") == "ymail"
    # Unknown receiver, no MX record: the domain is its own group.
    assert groups.group("odd.sim.test") == "odd.sim.test"
    assert groups.group("nomx.sim.test") == "nomx.sim.test"
    asked = sum(dns.queries.values())
    assert DestinationGroups().group("x1.sim.test") == "xmail"
    assert sum(dns.queries.values()) == asked  # cached


@pytest.mark.django_db
def test_a_dns_failure_falls_back_to_the_domain_without_stalling(dns):
    dns.drop.add("slow.sim.test")
    started = time.monotonic()
    assert DestinationGroups().group("slow.sim.test") == "slow.sim.test"
    assert time.monotonic() - started < 2.0
    assert ("slow.sim.test", "MX") in {(n, t) for n, t, _ in dns.queries}
    dns.servfail.add("other.sim.test")
    assert DestinationGroups().group("other.sim.test") == "other.sim.test"
    # Remembered: the next batch does not wait on the same name again.
    started = time.monotonic()
    assert DestinationGroups().group("slow.sim.test") == "slow.sim.test"
    assert time.monotonic() - started < 0.1


@pytest.mark.django_db
def test_throttling_by_one_group_moves_only_that_groups_share(health_cache):
    health = RouteHealthService(clock=lambda: NOW)
    dest = health.destinations
    for _ in range(30):
        dest.record("B", "xmail", "accepted", 0.01, NOW)
        dest.record("A", "ymail", "accepted", 0.01, NOW)
        dest.record("B", "ymail", "accepted", 0.01, NOW)
    for i in range(20):  # 40% of A's sends to xmail throttled (never 5 in a row)
        dest.record("A", "xmail", "throttled" if i % 5 in (1, 3) else "accepted", 0.01, NOW)
    routes = [spec("A"), spec("B")]
    shares_x, why_x = health.destination_shares(routes, "xmail", NOW)
    shares_y, _ = health.destination_shares(routes, "ymail", NOW)
    assert shares_x["A"] == pytest.approx(PROBE_SHARE)
    assert shares_x["B"] == pytest.approx(1 - PROBE_SHARE)
    assert shares_y == {"A": pytest.approx(0.5), "B": pytest.approx(0.5)}
    entry = {r["route"]: r for r in why_x["routes"]}["A"]
    assert entry["share"] == pytest.approx(PROBE_SHARE) and "throttled" in entry["why"]
    # The sliding window forgets: six minutes on, A has its share back.
    later = NOW + timedelta(minutes=6)
    assert health.destination_shares(routes, "xmail", later)[0]["A"] == pytest.approx(0.5)
    # The route's own health is untouched: no slow-down, closed circuit, score 1.
    assert health.state("A").state == RouteHealth.State.CLOSED
    assert health.scores.scores(["A", "B"], NOW)["A"].score == 1.0


@pytest.mark.django_db
def test_a_circuit_opens_for_one_group_on_one_route(health_cache, relay_settings):
    relay_settings(BREAKER_FAILURE_THRESHOLD=3, BREAKER_COOLDOWN_SECONDS=60)
    health = RouteHealthService(clock=lambda: NOW)
    for _ in range(3):
        health.after_result("A", "transient", True, 0.01, "421 4.7.0", group="xmail")
    routes = [spec("A"), spec("B")]
    ordered, choice = health.order_for(routes, "xmail")
    assert [r.name for r in ordered] == ["B"]
    assert "circuit open for xmail" in {r["route"]: r for r in choice["routes"]}["A"]["why"]
    ordered, _ = RouteHealthService(clock=lambda: NOW).order_for(routes, "ymail")
    assert sorted(r.name for r in ordered) == ["A", "B"]
    assert health.usable("A")  # the route itself stays closed for everyone
    # After the cool-down, A is back for xmail (with a probing share).
    later = RouteHealthService(clock=lambda: NOW + timedelta(seconds=61))
    assert "A" in [r.name for r in later.order_for(routes, "xmail")[0]]


@pytest.mark.django_db
def test_the_simulation_moves_a_throttled_groups_mail_and_gives_it_back(health_cache, admin_client):
    """Route A answers 421 4.7.0 to group X 40% of the time, B answers everything."""
    result = simulate(throttled_ticks=32, recovered_ticks=32, per_tick=20, tick_seconds=15)
    assert result.lost == [] and result.duplicates == []
    assert result.delivered == result.queued == 64 * 20
    # After a two-minute warm-up, B carries at least 90% of X's mail ...
    assert result.share("B", "X", 8, 31) >= 0.9
    # ... while Y keeps the configured 1:1 split.
    assert 0.35 <= result.share("A", "Y", 0, 31) <= 0.65
    # A recovers at tick 32; within the five-minute window (20 ticks) its share returns.
    assert result.share("A", "X", 32 + 20, 63) >= 0.35
    # Every attempt says why its route was chosen.
    attempt = DeliveryAttempt.objects.filter(route_choice__isnull=False).latest("pk")
    assert attempt.route_choice["destination"] in ("xmail", "ymail")
    assert {r["route"] for r in attempt.route_choice["routes"]} == {"A", "B"}
    # The admin's figures, as they were late in the throttled phase.
    overview = destination_overview(result.start + timedelta(minutes=7))
    rows = {(d.group, r.route_name): r for d in overview for r in d.rows}
    assert rows[("xmail", "B")].share >= 0.9 and rows[("xmail", "A")].share <= 0.1
    assert rows[("xmail", "A")].figures.sends > 0
    assert rows[("ymail", "A")].share == pytest.approx(0.5, abs=0.1)
    # The admin shows each group's routes and their shares.
    page = admin_client.get("/admin/django_smtprelay/routehealth/").content.decode()
    assert "By destination" in page and "xmail" in page and "ymail" in page
    # The attempts list says, under each attempt, the shares that chose its route.
    page = admin_client.get("/admin/django_smtprelay/deliveryattempt/").content.decode()
    assert re.search(r"for [xy]mail: A \d+%, B \d+%", page)


@pytest.mark.django_db
def test_one_batch_spends_a_bounded_time_on_look_ups(dns, monkeypatch):
    from django_smtprelay.health import destinations

    monkeypatch.setattr(destinations, "LOOKUP_BUDGET", 0.5)
    for name in ("a", "b", "c", "d"):
        dns.drop.add(f"{name}.slow.sim.test")
    groups = DestinationGroups()
    started = time.monotonic()
    found = [groups.group(f"{name}.slow.sim.test") for name in ("a", "b", "c", "d")]
    assert found == [f"{name}.slow.sim.test" for name in ("a", "b", "c", "d")]
    assert time.monotonic() - started < 1.5  # two look-ups of 0.3 s at most, not four
    asked = {name for name, rdtype, _ in dns.queries if rdtype == "MX"}
    assert "d.slow.sim.test" not in asked
    # Domains skipped for the budget are asked by a later batch.
    DestinationGroups().group("d.slow.sim.test")
    assert ("d.slow.sim.test", "MX") in {(n, t) for n, t, _ in dns.queries}
