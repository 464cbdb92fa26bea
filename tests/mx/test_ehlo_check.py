"""The EHLO name check on a direct-to-MX route's admin page, against loopback DNS."""

from __future__ import annotations

import pytest
from django.urls import reverse

from django_smtprelay.domains.ehlo import check_ehlo
from django_smtprelay.models import Route

pytestmark = pytest.mark.django_db


def test_a_name_that_resolves_to_the_sending_ip_and_back_is_ok(mx_settings):
    result = check_ehlo("good-ehlo.test", ["192.0.2.10"])
    assert result.status == "ok", result.fixes
    assert "192.0.2.10 reverses to good-ehlo.test" in result.found


@pytest.mark.parametrize(
    ("name", "ip", "fix"),
    [
        ("wrongip-ehlo.test", "192.0.2.10", "Publish wrongip-ehlo.test A 192.0.2.10"),
        ("noptr-ehlo.test", "192.0.2.11", "set its reverse DNS (PTR) to noptr-ehlo.test"),
        ("missing-ehlo.test", "192.0.2.12", "Publish missing-ehlo.test A 192.0.2.12"),
        ("localhost", "192.0.2.10", "not a fully qualified domain name"),
    ],
)
def test_what_to_fix_is_named(mx_settings, name, ip, fix):
    result = check_ehlo(name, [ip])
    assert result.status == "warning"
    assert any(fix in line for line in result.fixes), result.fixes


def test_without_a_single_sending_ip_the_check_says_what_it_needs(mx_settings):
    result = check_ehlo("good-ehlo.test", [])
    assert result.status == "unknown"
    assert "Sending IPs" in result.fixes[0]


def test_the_route_page_shows_the_check(mx_settings, mx_route, admin_client):
    route = mx_route(ehlo_hostname="noptr-ehlo.test", sending_ips="192.0.2.11")
    url = reverse("admin:django_smtprelay_route_change", args=[route.pk])
    page = admin_client.get(url).content.decode()
    assert "EHLO name noptr-ehlo.test and reverse DNS" in page
    assert "set its reverse DNS (PTR) to noptr-ehlo.test" in page
    good = mx_route(name="good", ehlo_hostname="good-ehlo.test", sending_ips="192.0.2.10")
    page = admin_client.get(reverse("admin:django_smtprelay_route_change", args=[good.pk]))
    assert "OK: the name resolves to the sending IP" in page.content.decode()
    smtp = Route.objects.create(name="relay", host="relay.example")
    page = admin_client.get(reverse("admin:django_smtprelay_route_change", args=[smtp.pk]))
    assert "ehlo-check" not in page.content.decode()


def test_an_mx_route_is_added_in_the_admin(admin_client, mx_settings):
    form = {
        "name": "direct",
        "kind": "mx",
        "mx_tls": "verified",
        "ehlo_hostname": "good-ehlo.test",
        "sending_ips": "192.0.2.10",
        "port": "25",
        "security": "starttls",
        "timeout": "30",
        "priority": "10",
        "weight": "1",
        "enabled": "on",
    }
    response = admin_client.post(reverse("admin:django_smtprelay_route_add"), form)
    assert response.status_code == 302, response.content.decode()[:3000]
    route = Route.objects.get(name="direct")
    assert (route.kind, route.mx_tls, route.ehlo_hostname) == ("mx", "verified", "good-ehlo.test")
    bad = {**form, "name": "direct2", "username": "someone"}
    page = admin_client.post(reverse("admin:django_smtprelay_route_add"), bad).content.decode()
    assert "logs in nowhere" in page
