"""The admin in a real browser: Playwright driving Debian's Chromium against a live server.

The tests never download a browser: they launch ``/usr/bin/chromium``
(``apt-get install chromium``). Without it they skip, saying so; in CI
(``CI`` set) they fail instead, since there the browser must be present.

The data is real (see ``control_room.py``): mail queued through the
backend and delivered by the engine to loopback relays, so the admin shows
sent, failed, deferred, expired and queued messages with the relays' own
replies. One live server and one data set serve a whole test module.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.test import override_settings
from django.test.utils import setup_databases, teardown_databases
from pytest_django.live_server_helper import LiveServer

from django_smtprelay.models import Route
from tests.browser.control_room import RELAY_PASSWORD, ControlRoom, RelayScript, build
from tests.dnsserver import DNSServer
from tests.smtpserver import SMTPTestServer

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
# The parent zone, so a lookup above shop.test gets NXDOMAIN, as from a real
# resolver, not REFUSED (which the checks report as "could not check").
TEST_ZONE = """
$TTL 300
@ SOA ns.test. hostmaster.test. 1 3600 600 86400 60
@ NS ns.test.
ns A 127.0.0.1
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


class PixelServer:
    """A loopback HTTP server that counts every request (a tracking pixel's)."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/gif")
                self.end_headers()
                self.wfile.write(b"GIF89a")

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/pixel.gif"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@dataclass
class Site:
    """The live server with its data set, and the servers behind it."""

    url: str
    room: ControlRoom
    relay: SMTPTestServer
    backup: SMTPTestServer
    pixel: PixelServer
    dns: DNSServer
    states: dict[str, Any] = field(default_factory=dict)  # logged-in browser state per user


def _make_routes(relay: SMTPTestServer, backup: SMTPTestServer, down_port: int) -> dict:
    def route(name: str, port: int, priority: int, **fields: Any) -> Route:
        password = fields.pop("password", "")
        made = Route(
            name=name,
            host="127.0.0.1",
            port=port,
            priority=priority,
            timeout=5.0,
            security=Route.Security.NONE,
            **fields,
        )
        made.password = password
        made.save()
        return made

    return {
        "eu-relay": route("eu-relay", down_port, 10),
        "primary-relay": route("primary-relay", relay.port, 20),
        "backup-relay": route(
            "backup-relay",
            backup.port,
            30,
            username="relayuser",
            password=RELAY_PASSWORD,
            allow_plaintext_auth=True,
        ),
    }


def _make_users(user_model: Any) -> None:
    user_model.objects.create_superuser("operator", "operator@shop.test", PASSWORD)
    support = user_model.objects.create_user(
        "support", "support@shop.test", PASSWORD, is_staff=True
    )
    # Every view permission of the app, except reading bodies.
    support.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="django_smtprelay", codename__startswith="view_"
        ).exclude(codename="view_message_body")
    )


def _ensure_test_database() -> Any:
    """Set up the test database when nothing else in the run asked pytest-django for it.

    pytest-django creates it only for a run with a test marked ``django_db`` or
    using ``db`` or ``live_server``; these tests reach it through the module's
    ``site``. Returns what ``teardown_databases`` needs, or None when it was there.
    """
    if connection.settings_dict["NAME"] == connection.creation._get_test_db_name():
        return None
    return setup_databases(verbosity=0, interactive=False, aliases={DEFAULT_DB_ALIAS})


@pytest.fixture(scope="module")
def site(
    chromium: Any, django_db_setup: None, django_db_blocker: Any, tls_certs: Any
) -> Iterator[Site]:
    """One live server and one data set for a whole test module (building it takes seconds).

    pytest-django's ``live_server`` flushes the database after every test that
    uses it, so the module starts its own server, and the database is flushed
    once, after the module.
    """
    from django.contrib.auth import get_user_model

    relay = SMTPTestServer(tls_certs=tls_certs, rcpt_replies=RelayScript()).start()
    backup = SMTPTestServer(
        tls_certs=tls_certs, auth={"relayuser": RELAY_PASSWORD}, auth_allow_plaintext=True
    ).start()
    with socket.socket() as sock:  # nothing listens there: the eu-relay refuses
        sock.bind(("127.0.0.1", 0))
        down_port = sock.getsockname()[1]
    pixel = PixelServer()
    dns = DNSServer({"shop.test.": SHOP_ZONE, "test.": TEST_ZONE}).start()
    overrides = override_settings(
        EMAIL_BACKEND="django_smtprelay.backends.QueuedEmailBackend",
        SMTPRELAY={**settings.SMTPRELAY, "DNS_NAMESERVERS": [dns.address], "DNS_TIMEOUT": 2.0},
    )
    overrides.enable()
    server = None
    own_databases = None
    try:
        with django_db_blocker.unblock():
            own_databases = _ensure_test_database()
            routes = _make_routes(relay, backup, down_port)
            room = build(routes, pixel.url)
            _make_users(get_user_model())
        server = LiveServer("127.0.0.1:0")
        yield Site(server.url, room, relay, backup, pixel, dns)
    finally:
        if server is not None:
            server.stop()
        for stoppable in (relay, backup, pixel, dns):
            stoppable.stop()
        with django_db_blocker.unblock():
            call_command("flush", interactive=False, verbosity=0)
            if own_databases is not None:
                teardown_databases(own_databases, verbosity=0)
            # While Playwright's loop runs, this thread's connections are not the
            # ones the session made before (Django keeps them per context): close
            # them, or dropping the test database finds them still open.
            connections.close_all()
        overrides.disable()


@pytest.fixture
def db_access(django_db_blocker: Any) -> Iterator[None]:
    """The test itself reads and writes the module's data set (committed at once)."""
    with django_db_blocker.unblock():
        yield


@pytest.fixture
def browse(chromium: Any, site: Site, db_access: None) -> Iterator[Callable[..., Any]]:
    """``browse(user="operator", width=1280, height=800)``: a logged-in page."""
    contexts = []

    def open_page(user: str = "operator", width: int = 1280, height: int = 800) -> Any:
        if user not in site.states:
            context = chromium.new_context()
            page = context.new_page()
            page.goto(f"{site.url}/admin/login/?next=/admin/")
            page.fill("#id_username", user)
            page.fill("#id_password", PASSWORD)
            page.click("input[type=submit]")
            page.wait_for_url(f"{site.url}/admin/")
            site.states[user] = context.storage_state()
            context.close()
        context = chromium.new_context(
            viewport={"width": width, "height": height}, storage_state=site.states[user]
        )
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(10_000)
        return page

    yield open_page
    for context in contexts:
        context.close()


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: ``SMTPRELAY_SCREENSHOT_DIR`` (docs/screenshots/ to refresh
    the README's), else a temporary folder, so a test run leaves the checkout alone."""
    folder = os.environ.get("SMTPRELAY_SCREENSHOT_DIR")
    path = Path(folder) if folder else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def tour_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the screenshots of every page at each window size go, to look at:
    ``SMTPRELAY_TOUR_DIR``, else a temporary folder."""
    folder = os.environ.get("SMTPRELAY_TOUR_DIR")
    path = Path(folder) if folder else tmp_path_factory.mktemp("tour")
    path.mkdir(parents=True, exist_ok=True)
    return path
