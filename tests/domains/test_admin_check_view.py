"""The sending domain's "check now" page: 404 for a bad id, 403 without change permission."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from django_smtprelay.models import SenderDomain


def check_url(object_id: object) -> str:
    return reverse("admin:django_smtprelay_senderdomain_check", args=[object_id])


@pytest.fixture
def domain(db) -> SenderDomain:
    return SenderDomain.objects.create(domain="clean.test", dkim_selectors="s1")


def staff_client(client, *codenames: str):
    user = User.objects.create_user("staff", password="pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    client.force_login(user)
    return client


@pytest.mark.parametrize("object_id", ["abc", "1.5", "999999", "-1", "%20"])
def test_bad_or_unknown_id_is_404(admin_client, domain, object_id):
    assert admin_client.post(check_url(object_id)).status_code == 404
    assert SenderDomain.objects.get(pk=domain.pk).checked_at is None


def test_without_change_permission_is_403(client, domain):
    staff = staff_client(client, "view_senderdomain")
    assert staff.post(check_url(domain.pk)).status_code == 403
    assert SenderDomain.objects.get(pk=domain.pk).checked_at is None


def test_with_change_permission_checks_the_domain(client, dns, routes, domain):
    staff = staff_client(client, "view_senderdomain", "change_senderdomain")
    response = staff.post(check_url(domain.pk))
    assert response.status_code == 302
    assert response["Location"] == reverse(
        "admin:django_smtprelay_senderdomain_change", args=[domain.pk]
    )
    assert SenderDomain.objects.get(pk=domain.pk).verdict == "ok"


def test_get_is_not_allowed(admin_client, domain):
    assert admin_client.get(check_url(domain.pk)).status_code == 405


def test_the_providers_checklist_reads_as_words_not_status_keys(admin_client, domain):
    domain.checked_at = domain.created_at
    domain.checklist = [
        {"key": "dkim", "requirement": "Every route signs", "status": "not_met", "detail": ""},
        {"key": "dmarc", "requirement": "A DMARC record", "status": "met", "detail": ""},
        {"key": "unsub", "requirement": "One-click unsubscribe", "status": "manual", "detail": ""},
    ]
    domain.save()
    page = admin_client.get(
        reverse("admin:django_smtprelay_senderdomain_change", args=[domain.pk])
    ).content.decode()
    for label in ("Not met", "Met", "Check by hand"):
        assert f">{label}</span>" in page
    assert ">not_met<" not in page and ">manual<" not in page
