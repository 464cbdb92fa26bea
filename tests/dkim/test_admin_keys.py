"""The sending domain's page: generate a key, see its TXT record, activate it once
published, and watch DMARC alignment turn from fail to pass as the route signs."""

from __future__ import annotations

import re

import pytest
from django.core.mail import EmailMessage
from django.urls import reverse

from django_smtprelay.delivery import DeliveryEngine
from django_smtprelay.models import DeliveryAttempt, DkimKey, Route, SenderDomain

pytestmark = pytest.mark.django_db


def page(client, domain: SenderDomain) -> str:
    response = client.get(reverse("admin:django_smtprelay_senderdomain_change", args=[domain.pk]))
    assert response.status_code == 200
    return response.content.decode()


def post(client, domain: SenderDomain, action: str, key_id: int = 0, **data):
    url = reverse("admin:django_smtprelay_senderdomain_dkim", args=[domain.pk, key_id, action])
    response = client.post(url, data, follow=True)
    assert response.status_code == 200
    return response.content.decode()


def test_generate_shows_the_record_and_never_the_private_key(admin_client, sender_domain, zone):
    html = page(admin_client, sender_domain)
    assert "No active DKIM key: mail from sign.test is sent unsigned." in html
    html = post(admin_client, sender_domain, "generate", selector="2026a", algorithm="rsa-sha256")
    key = DkimKey.objects.get()
    assert key.selector == "2026a" and not key.active
    assert "Generated 2026a._domainkey.sign.test" in html
    assert "2026a._domainkey.sign.test" in html
    for string in key.txt_strings:  # the record, as the 255-character strings to publish
        assert f'"{string}"' in html
    pem_lines = key.private_key.splitlines()[1:-1]
    assert not any(line in html for line in pem_lines)
    assert key.private_key_ciphertext not in html


def test_a_selector_in_use_or_invalid_is_refused(admin_client, sender_domain, zone):
    post(admin_client, sender_domain, "generate", selector="s1", algorithm="rsa-sha256")
    html = post(admin_client, sender_domain, "generate", selector="s1", algorithm="ed25519-sha256")
    assert "The selector s1 is taken on sign.test" in html
    html = post(admin_client, sender_domain, "generate", selector="bad selector!", algorithm="x")
    assert "is not a DKIM selector" in html
    assert DkimKey.objects.count() == 1


def test_activation_waits_for_the_published_record(admin_client, sender_domain, zone):
    post(admin_client, sender_domain, "generate", selector="s1", algorithm="rsa-sha256")
    key = DkimKey.objects.get()
    html = post(admin_client, sender_domain, "activate", key.pk)
    assert "Not activated, s1._domainkey.sign.test" in html and "dkim.missing" in html
    other = DkimKey.generate(sender_domain, "other", "rsa-sha256")
    zone.publish(key, other.txt_record)  # somebody else's key at s1
    html = post(admin_client, sender_domain, "activate", key.pk)
    assert "dkim.key_mismatch" in html
    key.refresh_from_db()
    assert not key.active
    zone.lines.clear()
    zone.publish(key)
    html = post(admin_client, sender_domain, "activate", key.pk)
    assert "From now on, s1._domainkey.sign.test signs the domain&#x27;s mail." in html
    key.refresh_from_db()
    assert key.active and key.dns_status == "published"
    html = post(admin_client, sender_domain, "retire", key.pk)
    key.refresh_from_db()
    assert not key.active and "No longer signing with s1._domainkey.sign.test" in html


def test_get_is_not_allowed_and_other_domains_keys_are_not_found(admin_client, sender_domain):
    url = reverse("admin:django_smtprelay_senderdomain_dkim", args=[sender_domain.pk, 0, "x"])
    assert admin_client.get(url).status_code == 405
    other = SenderDomain.objects.create(domain="other.test")
    key = DkimKey.generate(other, "s1", "ed25519-sha256")
    url = reverse(
        "admin:django_smtprelay_senderdomain_dkim", args=[sender_domain.pk, key.pk, "activate"]
    )
    assert admin_client.post(url).status_code == 404


def test_dmarc_alignment_turns_from_fail_to_pass_once_the_route_signs(
    admin_client, sender_domain, zone
):
    # The relay's IP is not in sign.test's SPF: only an aligned DKIM signature passes DMARC.
    Route.objects.create(name="own-relay", host="127.0.0.1", sending_ips="198.51.100.9")
    check = reverse("admin:django_smtprelay_senderdomain_check", args=[sender_domain.pk])

    def route_result() -> dict:
        admin_client.post(check)
        sender_domain.refresh_from_db()
        (result,) = sender_domain.route_results
        return result

    before = route_result()
    assert before["dmarc_pass"] is False and before["dkim"] == "none"
    assert "dmarc.route_fails" in {f["code"] for f in sender_domain.findings}

    Route.objects.filter(name="own-relay").update(dkim_sign=True)
    signing_no_key = route_result()
    assert signing_no_key["dmarc_pass"] is False
    assert "generate a DKIM key for sign.test, publish it and activate it" in signing_no_key["fix"]
    assert "dkim.unsigned" in {f["code"] for f in sender_domain.findings}

    post(admin_client, sender_domain, "generate", selector="s1", algorithm="rsa-sha256")
    post(admin_client, sender_domain, "generate", selector="e1", algorithm="ed25519-sha256")
    for key in DkimKey.objects.all():
        zone.publish(key)
        post(admin_client, sender_domain, "activate", key.pk)
    after = route_result()
    assert after["dmarc_pass"] is True and after["aligned_by"] == ["dkim"]
    assert after["dkim"] == "pass" and after["dkim_domain"] == "sign.test"
    assert {f["code"] for f in sender_domain.findings}.isdisjoint(
        {"dkim.unsigned", "dmarc.route_fails", "dkim.not_signing"}
    )
    assert set(DkimKey.objects.values_list("dns_status", flat=True)) == {"published"}
    html = page(admin_client, sender_domain)
    assert "No active DKIM key" not in html
    # The routes table's row: route, envelope domain, SPF, DKIM, DMARC, ...
    row = re.search(r"<td>own-relay</td>\s*<td>sign.test</td>.*?</tr>", html, re.S).group(0)
    cells = re.findall(r"<td>(.*?)</td>", row, re.S)
    assert cells[3].startswith("pass") and "d=sign.test s=e1, s1" in cells[3]  # DKIM
    assert cells[4] == "pass"  # DMARC


def test_a_published_record_that_does_not_match_fails_the_check(admin_client, sender_domain, zone):
    Route.objects.create(name="own-relay", host="127.0.0.1", dkim_sign=True)
    key = DkimKey.generate(sender_domain, "s1", "rsa-sha256")
    key.activate()  # activated by other means, and the record is somebody else's key
    zone.publish(key, DkimKey.generate(sender_domain, "x", "rsa-sha256").txt_record)
    admin_client.post(reverse("admin:django_smtprelay_senderdomain_check", args=[sender_domain.pk]))
    sender_domain.refresh_from_db()
    mismatch = [f for f in sender_domain.findings if f["code"] == "dkim.key_mismatch"]
    assert mismatch and mismatch[0]["expected"] == "s1._domainkey.sign.test"
    assert sender_domain.verdict == "failing"
    assert DkimKey.objects.get(selector="s1").dns_status == "dkim.key_mismatch"


def test_an_unreadable_key_is_reported_by_the_check(admin_client, sender_domain, zone):
    Route.objects.create(name="own-relay", host="127.0.0.1", dkim_sign=True)
    key = DkimKey.generate(sender_domain, "s1", "rsa-sha256")
    key.activate()
    DkimKey.objects.filter(pk=key.pk).update(private_key_ciphertext="gAAAAA-broken")
    admin_client.post(reverse("admin:django_smtprelay_senderdomain_check", args=[sender_domain.pk]))
    sender_domain.refresh_from_db()
    assert "dkim.key_unreadable" in {f["code"] for f in sender_domain.findings}


def test_attempts_list_by_the_key_that_signed(admin_client, smtp_server, make_route, make_key):
    server = smtp_server()
    make_route(server, dkim_sign=True)
    old = make_key("old")
    EmailMessage("First", "Body", "a@sign.test", ["x@x.test"]).send()
    DeliveryEngine().run()
    new = make_key("new")
    EmailMessage("Second", "Body", "a@sign.test", ["x@x.test"]).send()
    EmailMessage("Third", "Body", "a@unsigned.test", ["x@x.test"]).send()
    DeliveryEngine().run()
    assert DeliveryAttempt.objects.count() == 3
    changelist = reverse("admin:django_smtprelay_deliveryattempt_changelist")
    for value, subjects in [
        (old.pk, {"First"}),
        (new.pk, {"Second"}),
        ("unsigned", {"Third"}),
    ]:
        html = admin_client.get(f"{changelist}?dkim_key={value}").content.decode()
        shown = {s for s in ("First", "Second", "Third") if f">{s}</a>" in html}
        assert shown == subjects, value
    html = admin_client.get(changelist).content.decode()
    assert f"DKIM {new.name}" in html
