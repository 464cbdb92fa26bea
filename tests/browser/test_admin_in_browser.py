"""What an operator does in the admin, done in Chromium against a live server."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from django_smtprelay.models import Message, SenderDomain

pytestmark = pytest.mark.django_db(transaction=True)

MESSAGES = "/admin/django_smtprelay/message/"


def row(page: Any, text: str) -> Any:
    """The changelist row that contains ``text``."""
    return page.locator("#result_list tbody tr", has_text=text)


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n"), f"{path} is not a PNG"
    assert 5_000 < len(data) < 400_000, f"{path}: {len(data)} bytes"


def test_an_operator_logs_in_and_sees_the_app(admin_page, live_server):
    page = admin_page
    assert "Site administration" in page.title()
    assert page.locator("#user-tools").inner_text().upper().find("OPERATOR") >= 0
    page.goto(f"{live_server.url}/admin/")
    assert page.locator("a", has_text="Messages").first.is_visible()


def test_the_messages_list_shows_failed_and_sent_messages(
    admin_page, live_server, mail_history, screenshot_dir
):
    page = admin_page
    page.goto(f"{live_server.url}{MESSAGES}")
    assert "Failed" in row(page, "Invoice 1042").inner_text()
    assert "Sent" in row(page, "Welcome aboard").inner_text()
    assert "Deferred" in row(page, "Weekly report").inner_text()
    assert "Queued" in row(page, "Password reset").inner_text()
    expired = row(page, "Your sign-in code").inner_text()
    assert "Failed" in expired and "expired" in expired
    page.screenshot(path=screenshot_dir / "messages.png")
    assert_png(screenshot_dir / "messages.png")
    # The status filter: only the failed messages are left.
    page.goto(f"{live_server.url}{MESSAGES}?status__exact=failed")
    subjects = page.locator("#result_list tbody tr").all_inner_texts()
    assert len(subjects) == 2
    assert all("Failed" in s for s in subjects)
    assert not row(page, "Welcome aboard").count()


def test_a_failed_messages_page_shows_its_last_error(
    admin_page, live_server, mail_history, screenshot_dir
):
    page = admin_page
    page.goto(f"{live_server.url}{MESSAGES}?status__exact=failed")
    row(page, "Invoice 1042").locator("a").first.click()
    failed = mail_history["failed"]
    page.wait_for_url(re.compile(rf"{MESSAGES}{failed.pk}/change/"))
    text = page.locator("#content").inner_text()
    assert "550 5.1.1 <nobody@example.com>: Recipient address rejected" in text
    assert "User unknown in virtual mailbox table" in text, "the whole reply, not cut"
    assert "nobody@example.com" in text
    page.screenshot(path=screenshot_dir / "message.png", full_page=True)
    assert_png(screenshot_dir / "message.png")


def test_an_expired_messages_page_says_it_expired(admin_page, live_server, mail_history):
    page = admin_page
    expired = mail_history["expired"]
    page.goto(f"{live_server.url}{MESSAGES}{expired.pk}/change/")
    assert "expired: not delivered by" in page.locator("#content").inner_text()


def test_check_now_checks_a_sending_domain(admin_page, live_server, shop_dns):
    page = admin_page
    domain = SenderDomain.objects.get(domain="shop.test")
    assert domain.checked_at is None
    page.goto(f"{live_server.url}/admin/django_smtprelay/senderdomain/")
    page.locator("#result_list a", has_text="shop.test").click()
    assert "Not checked yet" in page.locator("#content").inner_text()
    page.get_by_role("button", name="Check now").click()
    page.wait_for_url(re.compile(rf"/senderdomain/{domain.pk}/change/"))
    assert "Checked shop.test" in page.locator(".messagelist").inner_text()
    report = page.locator(".smtprelay-domain-report").inner_text()
    assert "v=spf1 ip4:127.0.0.1 -all" in report, "the records found, read from the DNS server"
    domain.refresh_from_db()
    assert domain.checked_at is not None and domain.checked_at <= timezone.now()
    assert Message.objects.count() == 5
