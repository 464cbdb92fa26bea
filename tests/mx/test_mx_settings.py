"""Settings and bounds of direct-to-MX delivery."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from django_smtprelay.conf import app_settings
from django_smtprelay.domains import resolver as resolver_module
from django_smtprelay.routing import RouteSpec
from django_smtprelay.transports import get_transport
from django_smtprelay.transports.mx import MXTransport


def test_mx_hosts_are_reached_on_port_25_unless_told_otherwise(relay_settings):
    assert app_settings.mx_port_for("mx.example.com") == 25
    relay_settings(MX_PORT=2525, MX_PORTS={"mx1.example.com": 2626})
    assert app_settings.mx_port_for("MX1.example.com.") == 2626
    assert app_settings.mx_port_for("mx2.example.com") == 2525


@pytest.mark.parametrize(
    ("values", "error"),
    [
        ({"MX_PORT": 0}, "SMTPRELAY['MX_PORT'] must be a port number"),
        ({"MX_PORT": "25"}, "SMTPRELAY['MX_PORT'] must be a port number"),
        ({"MX_PORTS": {"mx.example.com": 70000}}, "['mx.example.com'] must be a port"),
        ({"MX_PORTS": [25]}, "MX_PORTS'] must be a dict"),
    ],
)
def test_a_bad_port_setting_is_named(relay_settings, values, error):
    relay_settings(**values)
    with pytest.raises(ImproperlyConfigured, match=error.replace("[", r"\[").replace("]", r"\]")):
        app_settings.mx_port_for("mx.example.com")


def test_an_mx_route_gets_the_mx_transport_with_a_lease_bound_per_domain():
    route = RouteSpec(name="direct", host="", port=25, kind="mx", timeout=10.0)
    transport = get_transport(route)
    assert isinstance(transport, MXTransport)
    one = transport.send_seconds(["a@one.test"])
    two = transport.send_seconds(["a@one.test", "b@two.test"])
    assert one >= 10.0 * 11 * 2  # two hosts, each opened and sent to
    assert two > one * 1.9


def test_the_dns_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(resolver_module, "MAX_CACHE_ENTRIES", 10)
    resolver_module.clear_cache()
    resolver = resolver_module.Resolver(cache_seconds=300)
    for number in range(25):
        resolver._store((f"d{number}.test", "MX"), 0.0, 300, answer=["10 mx.test."])
    assert len(resolver_module._cache) <= 10
    assert ("d24.test", "MX") in resolver_module._cache
    resolver_module.clear_cache()


@pytest.mark.django_db
def test_the_route_test_sends_through_the_mx_hosts(smtp_server, mx_settings, mx_route):
    from django_smtprelay.transports.probe import check_connection, send_test_message

    server = smtp_server()
    mx_settings({"amx.test": server})
    spec = RouteSpec.from_route(mx_route())
    data = b"From: s@example.com\r\nTo: a@amx.test\r\nSubject: test\r\n\r\nBody\r\n"
    result = send_test_message(spec, "s@example.com", "a@amx.test", data)
    assert result.ok, result
    assert "an MX host of amx.test accepted the message" in result.summary
    assert "amx.test [127.0.0.1]" in result.reply
    assert list(server.messages[0].rcpt_tos) == ["a@amx.test"]
    probe = check_connection(spec)
    assert not probe.ok and "send a test message" in probe.summary
