"""The admin pages, the check-now action, the management command, model validation."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.urls import reverse

from django_smtprelay.domains.tasks import refresh_domains
from django_smtprelay.models import Route, SenderDomain


@pytest.fixture
def domains(db):
    return [
        SenderDomain.objects.create(domain="clean.test", dkim_selectors="s1"),
        SenderDomain.objects.create(domain="nullmx.test"),
    ]


def test_changelist_shows_badges(admin_client, dns, routes, domains):
    call_command("smtprelay_check_domains", "clean.test", stdout=StringIO())
    response = admin_client.get(reverse("admin:django_smtprelay_senderdomain_changelist"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "clean.test" in html and "smtprelay-badge" in html and "Not checked yet" in html


def test_check_now_action(admin_client, dns, routes, domains):
    url = reverse("admin:django_smtprelay_senderdomain_changelist")
    response = admin_client.post(
        url,
        {"action": "check_now", "_selected_action": [d.pk for d in domains]},
        follow=True,
    )
    assert response.status_code == 200
    assert "2 domains checked; 1 is failing." in response.content.decode()
    assert SenderDomain.objects.get(domain="clean.test").verdict == "ok"
    assert SenderDomain.objects.get(domain="nullmx.test").verdict == "failing"


def test_detail_page_shows_findings_and_routes(admin_client, dns, routes, domains):
    nullmx = domains[1]
    check_url = reverse("admin:django_smtprelay_senderdomain_check", args=[nullmx.pk])
    assert admin_client.get(check_url).status_code == 405
    response = admin_client.post(check_url, follow=True)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Checked nullmx.test: Failing." in html
    assert "mx.null" in html and "Remove the null MX" in html
    assert "blocks delivery" in html
    assert "relay" in html and "spf, dkim" not in html  # no DKIM key at nullmx.test
    assert 'class="breadcrumbs"' in html
    assert "Mailbox providers" in html and "One-click unsubscribe" in html


def test_detail_page_before_any_check(admin_client, domains):
    url = reverse("admin:django_smtprelay_senderdomain_change", args=[domains[0].pk])
    response = admin_client.get(url)
    assert response.status_code == 200
    assert "Not checked yet" in response.content.decode()


def test_add_form_validates_domain(admin_client, db):
    url = reverse("admin:django_smtprelay_senderdomain_add")
    response = admin_client.post(url, {"domain": "not a domain", "dkim_selectors": "s1, bad!"})
    html = response.content.decode()
    assert "&#x27;not a domain&#x27; is not a domain name" in html
    assert "&#x27;bad!&#x27; is not a DKIM selector" in html


def test_command_json_and_exit_code(dns, routes, domains):
    out = StringIO()
    with pytest.raises(SystemExit) as exc:
        call_command("smtprelay_check_domains", "--json", stdout=out)
    assert exc.value.code == 1
    data = json.loads(out.getvalue())
    assert [d["domain"] for d in data] == ["clean.test", "nullmx.test"]
    assert [d["verdict"] for d in data] == ["ok", "failing"]
    assert data[0]["routes"][0] == {
        **data[0]["routes"][0],
        "route": "relay",
        "spf": "pass",
        "dmarc_pass": True,
        "aligned_by": ["spf", "dkim"],
    }
    null = next(f for f in data[1]["findings"] if f["code"] == "mx.null")
    assert null["blocking"] is True and null["found"] == "MX 0 ." and null["hint"]
    assert SenderDomain.objects.get(domain="nullmx.test").verdict == "failing"


def test_command_ok_exits_zero_and_prints_text(dns, routes):
    out = StringIO()
    call_command("smtprelay_check_domains", "clean.test", stdout=out)
    text = out.getvalue()
    assert "clean.test: ok" in text and "route relay: SPF pass, DMARC spf+dkim" in text


def test_command_rejects_bad_names(db):
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="Not a domain name: no_dots"):
        call_command("smtprelay_check_domains", "no_dots")
    with pytest.raises(CommandError, match="No sending domains yet"):
        call_command("smtprelay_check_domains")


def test_task_refreshes_every_domain(dns, routes, domains):
    assert refresh_domains.name == "django_smtprelay.refresh_domains"
    assert refresh_domains.run() == {"ok": 1, "failing": 1}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("sending_ips", "192.0.2.1, 192.0.2.300", "'192.0.2.300' is not an IP address"),
        ("spf_include", "spf relay", "'spf relay' is not a domain name"),
        ("return_path_domain", "-bad-.example", "'-bad-.example' is not a domain name"),
        ("dkim_selector", "s 1", "'s 1' is not a DKIM selector"),
    ],
)
def test_route_fields_are_validated(db, field, value, message):
    route = Route(name="r", host="relay.example", **{field: value})
    with pytest.raises(ValidationError) as exc:
        route.full_clean()
    assert message in str(exc.value.message_dict[field])


def test_route_dkim_domain_needs_selector(db):
    route = Route(name="r", host="relay.example", dkim_domain="example.com")
    with pytest.raises(ValidationError, match="selector"):
        route.full_clean()


def test_dkim_private_key_is_encrypted_and_not_in_repr(db, signing_pem):
    route = Route(name="r", host="relay.example")
    route.dkim_private_key = signing_pem
    route.save()
    stored = Route.objects.get(pk=route.pk)
    assert "PRIVATE KEY" not in stored.dkim_private_key_ciphertext
    assert stored.dkim_private_key == signing_pem
    assert "PRIVATE" not in repr(stored)
