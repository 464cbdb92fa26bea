"""Each domain's check has a query and a time budget, and one domain never stops the rest."""

from __future__ import annotations

import logging
import re
import socket
import time
from io import StringIO

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.test import override_settings
from django.urls import reverse

from django_smtprelay.domains import records
from django_smtprelay.domains.check import check_domain
from django_smtprelay.domains.refresh import refresh_domains
from django_smtprelay.domains.resolver import clear_cache
from django_smtprelay.domains.tasks import refresh_domains as refresh_task
from django_smtprelay.models import SenderDomain
from tests.domains.limits_zone import ORIGIN


def budget(**values: object) -> override_settings:
    return override_settings(SMTPRELAY={**django_settings.SMTPRELAY, **values})


def incomplete(report) -> str:
    return next(f.found for f in report.findings if f.code == "check.incomplete")


def test_query_budget_ends_the_check_with_what_it_found(dns, routes):
    before = dns.queries.total()
    with budget(DOMAIN_CHECK_MAX_QUERIES=3):
        report = check_domain("clean.test")
    assert dns.queries.total() - before == 3
    assert re.fullmatch(
        r"incomplete: query budget of 3 exhausted at [A-Z]+ \S+", incomplete(report)
    )
    assert report.records["spf"] == ["v=spf1 include:spf.relay.test ip4:198.51.100.7 -all"]
    assert report.verdict == "unknown" and report.areas["check"] == "unknown"


def test_query_budget_is_per_domain(dns, routes):
    SenderDomain.objects.create(domain="clean.test")
    SenderDomain.objects.create(domain="nullmx.test")
    before = dns.queries.copy()
    with budget(DOMAIN_CHECK_MAX_QUERIES=1):
        assert refresh_domains() == {"unknown": 2}
    asked = dns.queries - before
    found = [
        next(f["found"] for f in d.findings if f["code"] == "check.incomplete")
        for d in SenderDomain.objects.order_by("domain")
    ]
    # Each domain asked its one query (its SPF record) before it ran out: the
    # second did not inherit the first one's spent budget.
    assert asked == {("clean.test", "TXT", "udp"): 1, ("nullmx.test", "TXT", "udp"): 1}
    assert found == ["incomplete: query budget of 1 exhausted at TXT spf.relay.test"] * 2


def test_default_budget_leaves_a_normal_check_whole(dns, routes):
    report = check_domain("clean.test")
    assert "check.incomplete" not in {f.code for f in report.findings}
    assert report.verdict == "ok"


@pytest.fixture
def silent_server():
    """A nameserver that takes every query and never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    yield f"127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


def test_check_ends_within_its_time_budget(settings, silent_server):
    with budget(DNS_NAMESERVERS=[silent_server], DNS_TIMEOUT=5.0, DOMAIN_CHECK_TIMEOUT=1.0):
        clear_cache()
        start = time.monotonic()
        report = check_domain("silent.test", routes=[])
        elapsed = time.monotonic() - start
    assert 0.9 < elapsed < 2.0
    assert incomplete(report) == "incomplete: time budget of 1s exhausted at TXT silent.test"
    assert report.verdict == "unknown"
    assert "spf.unavailable" in {f.code for f in report.findings}


@pytest.mark.parametrize(
    ("key", "value"),
    [("DOMAIN_CHECK_MAX_QUERIES", 0), ("DOMAIN_CHECK_TIMEOUT", "60")],
)
def test_budget_settings_are_validated(dns, key, value):
    from django.core.exceptions import ImproperlyConfigured

    with budget(**{key: value}), pytest.raises(ImproperlyConfigured, match=key):
        check_domain("clean.test", routes=[])


# One domain's failure never stops the others.


def test_a_1000_deep_include_chain_does_not_stop_the_refresh(db, limits_dns):
    chain = SenderDomain.objects.create(domain=f"c0.chain.{ORIGIN}")
    good = SenderDomain.objects.create(domain=f"good.{ORIGIN}")
    counts = refresh_domains()
    assert sum(counts.values()) == 2
    chain.refresh_from_db()
    good.refresh_from_db()
    assert chain.verdict == "failing"
    assert "spf.too_many_lookups" in {f["code"] for f in chain.findings}
    assert good.checked_at is not None and good.areas["spf"] == "ok"


@pytest.fixture
def faulty(db, monkeypatch, limits_dns):
    """A fault injected into one area's check, for bad.limits.test only."""
    real = records.check_mx

    def check_mx(domain, resolver):
        if domain.startswith("bad."):
            raise RuntimeError(f"injected fault for {domain}")
        return real(domain, resolver)

    monkeypatch.setattr(records, "check_mx", check_mx)
    bad = SenderDomain.objects.create(domain=f"bad.{ORIGIN}")
    good = SenderDomain.objects.create(domain=f"good.{ORIGIN}")
    return bad, good


def assert_isolated(bad: SenderDomain, good: SenderDomain) -> None:
    bad.refresh_from_db()
    good.refresh_from_db()
    assert bad.verdict == "unknown" and bad.checked_at is not None
    assert bad.findings == [
        {
            **bad.findings[0],
            "code": "check.error",
            "found": f"RuntimeError: injected fault for bad.{ORIGIN}",
        }
    ]
    assert good.checked_at is not None and good.areas["spf"] == "ok"


def test_refresh_records_the_error_and_goes_on(faulty, caplog):
    with caplog.at_level(logging.ERROR, logger="django_smtprelay.domains.refresh"):
        counts = refresh_domains()
    assert counts == {"unknown": 1, "failing": 1}  # good.limits.test has no DMARC record
    assert_isolated(*faulty)
    logged = [r for r in caplog.records if f"bad.{ORIGIN}" in r.getMessage()]
    assert logged and logged[0].exc_info[0] is RuntimeError


def test_task_records_the_error_and_goes_on(faulty):
    counts = refresh_task.run()
    assert counts == {"unknown": 1, "failing": 1}  # good.limits.test has no DMARC record
    assert_isolated(*faulty)


def test_command_records_the_error_and_goes_on(faulty):
    out = StringIO()
    with pytest.raises(SystemExit) as exc:
        call_command("smtprelay_check_domains", stdout=out)
    assert exc.value.code == 1
    text = out.getvalue()
    assert f"bad.{ORIGIN}: unknown" in text and "check.error" in text
    assert f"good.{ORIGIN}: " in text
    assert_isolated(*faulty)


def test_admin_action_records_the_error_and_goes_on(faulty, admin_client):
    response = admin_client.post(
        reverse("admin:django_smtprelay_senderdomain_changelist"),
        {"action": "check_now", "_selected_action": [d.pk for d in faulty]},
        follow=True,
    )
    assert response.status_code == 200
    assert "2 domains checked" in response.content.decode()
    assert_isolated(*faulty)
