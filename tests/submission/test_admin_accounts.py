"""Submission accounts in the admin: a write-only password, use and volume,
and messages filtered by the account they came in with."""

from __future__ import annotations

import pytest
from django.urls import reverse

from django_smtprelay.backends import queue
from django_smtprelay.envelope import PreparedMessage
from django_smtprelay.models import Message, SubmissionAccount

pytestmark = pytest.mark.django_db

ADD = "admin:django_smtprelay_submissionaccount_add"
FORM = {
    "name": "Legacy PHP app",
    "username": "php",
    "allowed_senders": "shop@example.com\nnews.example.com",
    "route_tag": "",
    "max_message_size": "",
    "max_messages_per_minute": "",
    "max_messages_per_hour": "600",
    "enabled": "on",
}


def test_the_password_is_hashed_and_never_shown(admin_client, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    secret = "Vn3-long-enough-password"
    response = admin_client.post(reverse(ADD), {**FORM, "new_password": secret})
    assert response.status_code == 302, response.content[:2000]
    account = SubmissionAccount.objects.get(username="php")
    assert account.check_password(secret) and secret not in account.password
    assert secret not in repr(account)
    change = reverse("admin:django_smtprelay_submissionaccount_change", args=[account.pk])
    page = admin_client.get(change).content.decode()
    assert secret not in page and account.password not in page
    # A blank password keeps the stored one.
    response = admin_client.post(change, {**FORM, "name": "PHP shop", "new_password": ""})
    assert response.status_code == 302
    account.refresh_from_db()
    assert account.name == "PHP shop" and account.check_password(secret)


def test_a_new_account_needs_a_password_and_valid_senders(admin_client):
    response = admin_client.post(
        reverse(ADD), {**FORM, "allowed_senders": "shop@example.com\nnot a domain!"}
    )
    assert response.status_code == 200
    errors = str(response.context["adminform"].form.errors)
    assert "Type a password" in errors
    assert "&#x27;not a domain!&#x27; is neither an address" in errors
    assert not SubmissionAccount.objects.exists()


def _queue(subject: str, account_id: int | None) -> None:
    prepared = PreparedMessage(
        from_email="shop@example.com",
        recipients=["a@example.net"],
        data=f"Subject: {subject}\r\n\r\nbody\r\n".encode(),
        subject=subject,
        message_id="",
        route_hint="",
        priority="",
        submission_account_id=account_id,
    )
    queue([(prepared, Message.Priority.NORMAL)])


def test_messages_filter_by_account_and_the_list_shows_volume(admin_client):
    account = SubmissionAccount.objects.create(
        name="Legacy PHP app", username="php", messages_accepted=7, messages_rejected=2
    )
    _queue("from php", account.pk)
    _queue("from the site", None)
    changelist = reverse("admin:django_smtprelay_message_changelist")
    page = admin_client.get(changelist, {"submission_account": account.pk}).content.decode()
    assert "from php" in page and "from the site" not in page
    page = admin_client.get(changelist, {"submission_account": "site"}).content.decode()
    assert "from the site" in page and "from php" not in page
    accounts = admin_client.get(
        reverse("admin:django_smtprelay_submissionaccount_changelist")
    ).content.decode()
    assert ">7 accepted</a>" in accounts and "<small>2 refused</small>" in accounts
    assert f"?submission_account={account.pk}" in accounts


def test_allowed_senders_match_addresses_and_domains():
    account = SubmissionAccount(allowed_senders="shop@example.com, @News.Example.com")
    assert account.may_send_as("Shop@Example.com")
    assert account.may_send_as("anyone@news.example.com")
    assert not account.may_send_as("other@example.com")
    assert not account.may_send_as("a@sub.news.example.com")
