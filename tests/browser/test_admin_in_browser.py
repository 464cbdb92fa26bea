"""What an operator does in the admin, done in Chromium against a live server.

The tests share one data set (``control_room.py``); the ones that change it
(retry now, send again, check now) touch only messages and a domain the
others do not read.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from django_smtprelay.delivery import DeliveryEngine
from django_smtprelay.models import (
    DeliveryAttempt,
    Message,
    Recipient,
    Route,
    SenderDomain,
    SubmissionAccount,
)

from .conftest import PASSWORD
from .control_room import RELAY_PASSWORD

ADMIN = "/admin/django_smtprelay"
MESSAGES = f"{ADMIN}/message/"
RECIPIENTS = f"{ADMIN}/recipient/"
SIZES = ((1280, 800), (1440, 900))


def row(page: Any, text: str) -> Any:
    """The changelist row that contains ``text``."""
    return page.locator("#result_list tbody tr", has_text=text)


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n"), f"{path} is not a PNG"
    assert 5_000 < len(data) < 1_500_000, f"{path}: {len(data)} bytes"


def whole_page(page: Any, path: Path) -> None:
    """A screenshot of the whole page, taken in a window as tall as the page: Chromium
    paints no iframe outside the window, so a full-page screenshot would show the
    HTML preview blank."""
    size = page.viewport_size
    height = page.evaluate("document.documentElement.scrollHeight")
    page.set_viewport_size({"width": size["width"], "height": height})
    page.screenshot(path=path)
    page.set_viewport_size(size)
    assert_png(path)


def assert_fits(page: Any) -> None:
    """Nothing on the page needs a horizontal scroll bar, and no cell cuts its text."""
    width = page.evaluate("document.documentElement.scrollWidth")
    viewport = page.viewport_size["width"]
    assert width <= viewport, f"{page.url}: {width}px wide in a {viewport}px window"
    # A box that scrolls or hides what overflows it (the change list's results
    # scroll sideways) hides text from someone who does not scroll.
    clipped = page.evaluate(
        """() => [...document.querySelectorAll('#content *')].filter(e => {
            const style = getComputedStyle(e);
            return !e.closest('.visually-hidden')
                && ['auto', 'scroll', 'hidden'].includes(style.overflowX)
                && e.scrollWidth > e.clientWidth + 1;
        }).map(e => `${e.tagName}.${e.className}: ${e.innerText.slice(0, 60)}`)"""
    )
    assert clipped == [], f"{page.url}: cut off {clipped}"


def test_an_operator_logs_in_and_sees_the_app(chromium, site, db_access):
    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = context.new_page()
        page.goto(f"{site.url}/admin/login/?next=/admin/")
        page.fill("#id_username", "operator")
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        page.wait_for_url(f"{site.url}/admin/")
        assert "Site administration" in page.title()
        assert "OPERATOR" in page.locator("#user-tools").inner_text().upper()
        page.locator("a", has_text="Outbound mail").first.click()
        page.wait_for_url(f"{site.url}{ADMIN}/")
        assert page.locator("#smtprelay-dashboard").is_visible()
    finally:
        context.close()


def test_the_dashboard_shows_the_queue_charts_routes_and_top_errors(browse, site, screenshot_dir):
    page = browse(width=1280, height=800)
    page.goto(f"{site.url}{ADMIN}/")
    cards = {
        card.get_attribute("data-status"): int(card.locator("b").inner_text())
        for card in page.locator("#smtprelay-queue a.smtprelay-card").all()
    }
    for status in ("queued", "deferred"):
        assert cards[status] == Message.objects.filter(status=status).count() > 0, cards
    assert cards["failed"] >= 1 and cards["sent"] >= 10, cards
    # Both charts are drawn, with bars for what was sent and what failed.
    for chart in ("#smtprelay-chart-hourly", "#smtprelay-chart-daily"):
        assert page.locator(f"{chart} svg rect.bar-sent").count() >= 5, chart
    assert page.locator("#smtprelay-chart-hourly svg rect.bar-failed").count() >= 1
    # Every route, in failover order, with its circuit: the refusing relay's is open.
    routes = page.locator("#smtprelay-routes tbody tr")
    assert [r.get_attribute("data-route") for r in routes.all()] == [
        "eu-relay",
        "primary-relay",
        "backup-relay",
    ]
    eu = page.locator('#smtprelay-routes tr[data-route="eu-relay"]').inner_text()
    assert "Open" in eu and "Connection refused" in eu, eu
    assert "Closed" in page.locator('tr[data-route="primary-relay"]').inner_text()
    whole_page(page, screenshot_dir / "dashboard.png")
    # The top error links to the attempts behind it: as many as it counts.
    top = page.locator("#smtprelay-errors tbody tr").first
    count = int(top.locator("td.num a").inner_text())
    reply = top.locator("td.reply").inner_text()
    top.locator("td.num a").click()
    page.wait_for_url(re.compile(r"/deliveryattempt/\?"))
    attempts = page.locator("#result_list tbody tr")
    assert attempts.count() == count, reply
    first_words = reply.split("<")[0].split("[")[0].strip()[:20]
    assert all(first_words.split()[0] in t for t in attempts.all_inner_texts()), reply


def test_the_messages_list_shows_each_state_and_filters_by_status(browse, site):
    page = browse()
    page.goto(f"{site.url}{MESSAGES}")
    assert "Failed" in row(page, "Invoice 1042").inner_text()
    assert "Sent" in row(page, "Welcome aboard").inner_text()
    assert "Deferred" in row(page, "Weekly report").inner_text()
    assert "Queued" in row(page, "Password reset").inner_text()
    expired = row(page, "Your sign-in code").inner_text()
    assert "Failed" in expired and "expired: not delivered by" in expired
    page.locator("#changelist-filter a", has_text="Failed").first.click()
    page.wait_for_url(re.compile(r"status__exact=failed"))
    shown = page.locator("#result_list tbody tr").all_inner_texts()
    assert len(shown) == Message.objects.filter(status="failed").count() >= 3
    assert all("Failed" in text for text in shown)


def test_a_failed_messages_page_leads_with_its_whole_last_error(browse, site):
    page = browse()
    failed = site.room.messages["failed"]
    page.goto(f"{site.url}{MESSAGES}?status__exact=failed")
    row(page, "Invoice 1042").locator("a").first.click()
    page.wait_for_url(re.compile(rf"{MESSAGES}{failed.pk}/change/"))
    assert page.title().startswith("Invoice 1042 |")
    rows = page.locator("fieldset .form-row").all_inner_texts()
    assert rows[0].split()[:2] == ["Status:", "Failed"], rows[0]
    assert rows[1].startswith("Last error:")
    assert "550 5.1.1 <nobody@example.com>: Recipient address rejected" in rows[1]
    assert "User unknown in virtual mailbox table" in rows[1], "the whole reply, not cut"


def test_the_recipients_list_finds_the_last_hours_failures(browse, site, screenshot_dir):
    page = browse()
    page.goto(f"{site.url}{RECIPIENTS}")
    page.locator("#changelist-filter a", has_text="Failed").first.click()
    page.locator("#changelist-filter a", has_text="Last hour").click()
    page.wait_for_url(re.compile(r"status=failed"))
    assert "updated=1h" in page.url
    shown = {r.locator("th, td").first.inner_text().strip() for r in page.locator(
        "#result_list tbody tr").all()}  # fmt: skip
    since = timezone.now() - timezone.timedelta(hours=1)
    expected = set(
        Recipient.objects.filter(status="failed", updated_at__gte=since).values_list(
            "address", flat=True
        )
    )
    assert shown == expected and "nobody@example.com" in shown, shown
    assert site.room.old_failure_address not in shown, "an older failure is not in the last hour"
    nobody = row(page, "nobody@example.com").inner_text()
    assert "550 5.1.1" in nobody and "User unknown in virtual mailbox table" in nobody
    whole_page(page, screenshot_dir / "recipients.png")
    # Search by address, within the same filters.
    page.fill("#searchbar", "typo.dave@example.com")
    page.press("#searchbar", "Enter")
    page.wait_for_url(re.compile(r"q=typo.dave"))
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 1 and "typo.dave@example.com" in rows.first.inner_text()
    # The older failure is found without the time filter.
    page.goto(f"{site.url}{RECIPIENTS}?q={site.room.old_failure_address}")
    assert "Failed" in row(page, site.room.old_failure_address).inner_text()


def test_the_recipient_domain_filter_and_search(browse, site):
    """The filter's choice and "@domain" typed in any case find the same rows (an index range)."""
    page = browse()
    at_net = set(Recipient.objects.filter(domain="example.net").values_list("address", flat=True))
    assert at_net and all(a.endswith("@example.net") for a in at_net)
    for start in (RECIPIENTS, MESSAGES):
        page.goto(f"{site.url}{start}")
        page.locator('#changelist-filter a[href$="?domain=example.net"]').click()
        page.wait_for_url(re.compile(r"\?domain=example\.net$"))
        shown = page.locator("#result_list tbody tr").all_inner_texts()
        if start == RECIPIENTS:
            addresses = {text.split()[0].replace("\u200b", "") for text in shown}
            assert addresses == at_net, shown
        else:
            expected = Message.objects.filter(recipients__domain="example.net").distinct()
            assert len(shown) == expected.count(), shown
        page.fill("#searchbar", "@Example.NET")
        page.press("#searchbar", "Enter")
        page.wait_for_url(re.compile(r"q=%40Example.NET"))
        assert page.locator("#result_list tbody tr").all_inner_texts() == shown


def test_a_messages_page_shows_its_timeline_and_a_sandboxed_preview(browse, site, screenshot_dir):
    page = browse()
    newsletter = site.room.messages["newsletter"]
    page.goto(f"{site.url}{MESSAGES}")
    row(page, "November at Northwind").locator("a").first.click()
    page.wait_for_url(re.compile(rf"{MESSAGES}{newsletter.pk}/change/"))
    assert page.title().startswith("November at Northwind: the winter collection |")
    timeline = page.locator(".smtprelay-timeline").inner_text()
    assert "Queued" in timeline and "eu-relay" in timeline and "primary-relay" in timeline
    assert "typo.dave@example.com: Failed" in timeline and "550 5.1.1" in timeline
    assert "bob@example.com: Delivered" in timeline
    frame = page.locator("iframe.smtprelay-html-preview")
    assert frame.get_attribute("sandbox") == ""
    # The HTML part is shown, and its tracking pixel was never asked for.
    inner = page.frame_locator("iframe.smtprelay-html-preview")
    assert "winter collection" in inner.locator("body").inner_text()
    page.wait_for_load_state("networkidle")
    assert site.pixel.requests == [], "the preview loaded remote content"
    assert "Our winter collection is here" in page.locator(".smtprelay-text-preview").inner_text()
    whole_page(page, screenshot_dir / "message.png")
    # The same HTML outside the sandbox does load the pixel: the check above can fail.
    page.set_content(f'<img src="{site.pixel.url}?control">')
    page.wait_for_load_state("networkidle")
    assert site.pixel.requests == ["/pixel.gif?control"]
    site.pixel.requests.clear()


def test_the_eml_download_is_the_message_as_sent(browse, site):
    page = browse()
    sent = site.room.messages["sent"]
    page.goto(f"{site.url}{MESSAGES}{sent.pk}/change/")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download .eml").click()
    data = Path(download.value.path()).read_bytes()
    assert download.value.suggested_filename == f"message-{sent.pk}.eml"
    assert b"Subject: Welcome aboard" in data
    assert data == bytes(sent.content.raw)


def test_staff_without_the_body_permission_see_envelopes_and_states_only(browse, site, tour_dir):
    page = browse("support")
    failed = site.room.messages["newsletter"]
    page.goto(f"{site.url}{MESSAGES}{failed.pk}/change/")
    whole_page(page, tour_dir / "message-without-body-permission.png")
    content = page.locator("#content").inner_text()
    assert "typo.dave@example.com" in content and "550 5.1.1" in content
    assert "Timeline" in content
    assert "needs the “Can view message bodies” permission" in content
    assert page.locator("iframe").count() == 0
    assert page.locator(".smtprelay-text-preview").count() == 0
    assert page.get_by_role("link", name="Download .eml").count() == 0
    assert "winter collection is here" not in page.content()
    response = page.goto(f"{site.url}{MESSAGES}{failed.pk}/eml/")
    assert response.status == 403
    assert b"winter collection" not in response.body()
    assert site.pixel.requests == []


def test_retry_now_sends_a_deferred_message_at_once(browse, site):
    page = browse()
    deferred = site.room.refresh("deferred")
    assert deferred.status == Message.Status.DEFERRED and deferred.next_attempt_at > timezone.now()
    page.goto(f"{site.url}{MESSAGES}?status__exact=deferred")
    row(page, "Weekly report").locator("input.action-select").check()
    page.select_option("select[name=action]", "retry_now")
    page.click("button[name=index]")
    assert page.locator(".messagelist").inner_text().strip() == "1 message is being sent now."
    retried = site.room.refresh("deferred")
    assert retried.status == Message.Status.DEFERRED
    assert retried.next_attempt_at <= timezone.now(), "due now"
    # A worker takes it now (the relay greylisted it only once).
    DeliveryEngine().run([retried.pk])
    page.goto(f"{site.url}{MESSAGES}{retried.pk}/change/")
    assert "busy@example.net: Delivered" in page.locator(".smtprelay-timeline").inner_text()
    assert site.room.refresh("deferred").status == Message.Status.SENT


def test_send_again_through_another_route(browse, site):
    page = browse()
    expired = site.room.refresh("expired")
    assert expired.status == Message.Status.FAILED and "expired" in expired.last_error
    attempts_before = expired.attempts.count()
    page.goto(f"{site.url}{MESSAGES}?status__exact=failed")
    row(page, "Your sign-in code").locator("input.action-select").check()
    page.select_option("select[name=action]", "send_again_failed")
    page.click("button[name=index]")
    assert (
        "The failed and cancelled recipients of 1 selected message"
        in page.locator("#content").inner_text()
    )
    backup = site.room.routes["backup-relay"]
    page.select_option("select[name=route]", str(backup.pk))
    page.get_by_role("button", name="Send again").click()
    assert (
        page.locator(".messagelist").inner_text().strip()
        == "1 message queued to be sent again through backup-relay."
    )
    again = site.room.refresh("expired")
    assert again.status == Message.Status.QUEUED and again.route_hint == "backup-relay"
    assert again.deliver_by is None and again.last_error == ""
    assert list(again.recipients.values_list("status", flat=True)) == ["pending"]
    assert again.attempts.count() == attempts_before, "the earlier attempts stay"
    DeliveryEngine().run([again.pk])
    assert site.room.refresh("expired").status == Message.Status.SENT
    delivered = site.backup.messages[-1]
    assert delivered.rcpt_tos == ("frank@example.com",) and delivered.auth_user == "relayuser"


def test_test_connection_shows_the_dialogue_with_the_password_masked(browse, site):
    page = browse()
    route = site.room.routes["backup-relay"]
    page.goto(f"{site.url}{ADMIN}/route/{route.pk}/change/")
    page.get_by_role("link", name="Test connection").click()
    page.get_by_role("button", name="Test connection").click()
    outcome = page.locator(".smtprelay-outcome").inner_text()
    assert outcome.startswith("Worked:"), outcome
    dialogue = page.locator(".smtprelay-dialogue").inner_text()
    assert "EHLO" in dialogue.upper() and "AUTH PLAIN ******" in dialogue, dialogue
    assert "235" in dialogue and "QUIT" in dialogue.upper()
    assert RELAY_PASSWORD not in page.content()
    assert Route.objects.get(pk=route.pk).password == RELAY_PASSWORD, "stored, not shown"
    assert not site.backup.messages or all(
        "Test message" not in m.data.decode() for m in site.backup.messages
    )


def test_check_now_checks_a_sending_domain(browse, site):
    page = browse()
    domain = SenderDomain.objects.get(domain="shop.test")
    assert domain.checked_at is None
    page.goto(f"{site.url}{ADMIN}/senderdomain/")
    page.locator("#result_list a", has_text="shop.test").click()
    assert "Not checked yet" in page.locator("#content").inner_text()
    page.get_by_role("button", name="Check now").click()
    page.wait_for_url(re.compile(rf"/senderdomain/{domain.pk}/change/"))
    assert "Checked shop.test" in page.locator(".messagelist").inner_text()
    report = page.locator(".smtprelay-domain-report").inner_text()
    assert "v=spf1 ip4:127.0.0.1 -all" in report, "the records found, read from the DNS server"
    domain.refresh_from_db()
    assert domain.checked_at is not None and domain.checked_at <= timezone.now()


def test_route_health_lists_every_route(browse, site):
    page = browse()
    page.goto(f"{site.url}{ADMIN}/routehealth/")
    text = page.locator(".smtprelay-health").inner_text()
    for name in ("eu-relay", "primary-relay", "backup-relay"):
        assert name in text
    assert "Open" in page.locator(".smtprelay-health tr", has_text="eu-relay").inner_text()


PAGES = {
    "dashboard": f"{ADMIN}/",
    "messages": MESSAGES,
    "failed-messages": f"{MESSAGES}?status__exact=failed",
    "recipients": RECIPIENTS,
    "attempts": f"{ADMIN}/deliveryattempt/",
    "routes": f"{ADMIN}/route/",
    "route-health": f"{ADMIN}/routehealth/",
    "domains": f"{ADMIN}/senderdomain/",
    "submission-accounts": f"{ADMIN}/submissionaccount/",
    "submission-account-add": f"{ADMIN}/submissionaccount/add/",
    "recipient-events": f"{ADMIN}/recipientevent/",
    "suppressions": f"{ADMIN}/suppression/",
    "route-add": f"{ADMIN}/route/add/",
}


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_every_page_fits_the_window(browse, site, tour_dir, width, height):
    """At 1280x800 and 1440x900 nothing needs a horizontal scroll bar, and no text is cut."""
    page = browse(width=width, height=height)
    pages = dict(PAGES)
    for name in ("newsletter", "failed", "deferred"):
        pages[f"message-{name}"] = f"{MESSAGES}{site.room.messages[name].pk}/change/"
    route = site.room.routes["backup-relay"]
    pages["route"] = f"{ADMIN}/route/{route.pk}/change/"
    pages["route-test-message"] = f"{ADMIN}/route/{route.pk}/send-test-message/"
    pages["domain"] = (
        f"{ADMIN}/senderdomain/{SenderDomain.objects.get(domain='shop.test').pk}/change/"
    )
    SubmissionAccount.objects.filter(username="php-app").delete()  # the other window size's
    account = SubmissionAccount(name="Legacy PHP app with a long name", username="php-app")
    account.set_password("a long password 1234")
    account.messages_accepted, account.messages_rejected = 12345, 67
    account.last_used_at, account.last_client = timezone.now(), "2001:db8:ffff:ffff::1234"
    account.save()
    for name, path in pages.items():
        page.goto(f"{site.url}{path}")
        page.screenshot(path=tour_dir / f"{name}-{width}.png")
        assert_fits(page)
    assert DeliveryAttempt.objects.exists()
