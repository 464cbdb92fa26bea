"""The admin in a real browser: Playwright driving Debian's Chromium against a live server.

The tests never download a browser: they launch ``/usr/bin/chromium``
(``apt-get install chromium``). Without it they skip, saying so; in CI
(``CI`` set) they fail instead, since there the browser must be present.

The data is real: mail queued through the backend and delivered by the
engine to a loopback relay, so the admin shows sent, failed, deferred,
expired and queued messages with the relay's own replies.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.mail import EmailMessage
from django.utils import timezone

from django_smtprelay.delivery import DeliveryEngine
from django_smtprelay.models import Message
from tests.dnsserver import DNSServer

# Debian's Chromium; SMTPRELAY_TEST_CHROMIUM only lets a test point it elsewhere.
CHROMIUM = Path(os.environ.get("SMTPRELAY_TEST_CHROMIUM", "/usr/bin/chromium"))
PASSWORD = "browser-test-password"

SHOP_ZONE = """
$TTL 300
@ SOA ns.shop.test. hostmaster.shop.test. 1 3600 600 86400 60
@ NS ns.shop.test.
ns A 127.0.0.1
@ TXT "v=spf1 ip4:127.0.0.1 -all"
@ MX 10 mx.shop.test.
mx A 127.0.0.1
_dmarc TXT "v=DMARC1; p=none; rua=mailto:dmarc@shop.test"
"""


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="package")
def chromium() -> Iterator[Any]:
    """One headless Chromium for the browser tests, closed after them."""
    if not CHROMIUM.exists():
        why = (
            f"{CHROMIUM} is missing: install Debian's Chromium with `apt-get install chromium` "
            "to run the browser tests (they never download a browser)"
        )
        if in_ci():
            pytest.fail(why)
        pytest.skip(why)
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an asyncio loop marked running in this thread
    # while it is open, and Django then refuses ORM calls from the test itself
    # (SynchronousOnlyOperation). No coroutine ever touches the ORM here, so
    # that guard is lifted for as long as the browser is open, and only then.
    before = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
            )
            yield browser
            browser.close()
    finally:
        if before is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = before


@pytest.fixture
def shop_dns(relay_settings: Any) -> Iterator[DNSServer]:
    """A DNS server on 127.0.0.1 for shop.test, the sending domain's checks ask it."""
    server = DNSServer({"shop.test.": SHOP_ZONE}).start()
    relay_settings(DNS_NAMESERVERS=[server.address], DNS_TIMEOUT=2.0)
    try:
        yield server
    finally:
        server.stop()


def _queue(subject: str, to: str, **attrs: Any) -> Message:
    email = EmailMessage(subject, f"{subject}\n\nHello.", "shop@shop.test", [to])
    for key, value in attrs.items():
        setattr(email, f"smtprelay_{key}", value)
    email.send()
    return Message.objects.latest("pk")


@pytest.fixture
def mail_history(transactional_db: None, smtp_server: Any, make_route: Any) -> dict[str, Message]:
    """Queued, sent, deferred, failed and expired messages, delivered by the engine."""
    relay = smtp_server(
        rcpt_replies={
            "nobody@example.com": "550 5.1.1 <nobody@example.com>: Recipient address rejected: "
            "User unknown in virtual mailbox table",
            "busy@example.com": "451 4.7.1 Greylisted, please try again in 300 seconds",
        }
    )
    make_route(relay, name="primary-relay")
    made = {
        "sent": _queue("Welcome aboard", "alice@example.com"),
        "failed": _queue("Invoice 1042", "nobody@example.com"),
        "deferred": _queue("Weekly report", "busy@example.com"),
        "expired": _queue(
            "Your sign-in code", "bob@example.com", expires_at=timezone.now() - timedelta(minutes=1)
        ),
    }
    DeliveryEngine().run()
    made["queued"] = _queue("Password reset", "carol@example.com")
    return {name: Message.objects.get(pk=m.pk) for name, m in made.items()}


@pytest.fixture
def admin_page(
    chromium: Any, live_server: Any, mail_history: dict[str, Message], django_user_model: Any
) -> Iterator[Any]:
    """A Playwright page logged in to the live server's admin as a superuser."""
    django_user_model.objects.create_superuser("operator", "operator@shop.test", PASSWORD)
    context = chromium.new_context(viewport={"width": 1280, "height": 720})
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")
    try:
        yield page
    finally:
        context.close()


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: ``SMTPRELAY_SCREENSHOT_DIR`` (docs/screenshots/ to refresh
    the README's), else a temporary folder, so a test run leaves the checkout alone."""
    folder = os.environ.get("SMTPRELAY_SCREENSHOT_DIR")
    path = Path(folder) if folder else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path
