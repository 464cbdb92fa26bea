"""A route's "Test connection" and "Send a test message": the dialogue, masked, over real relays."""

from __future__ import annotations

import base64
import html
import re
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from django_smtprelay.models import DeliveryAttempt, Message, Route, RouteHealth

pytestmark = pytest.mark.django_db

PASSWORD = "s3cret-Pa55-w0rd"
PLAIN_BLOB = base64.b64encode(f"\0relayuser\0{PASSWORD}".encode()).decode()


def tool_url(route: Route, tool: str) -> str:
    return f"/admin/django_smtprelay/route/{route.pk}/{tool}/"


@pytest.fixture
def tls_route(smtp_server: Any, make_route: Any, trust_test_ca: None) -> tuple[Any, Route]:
    server = smtp_server(tls="starttls", auth={"relayuser": PASSWORD})
    route = make_route(server, security="starttls", username="relayuser", password=PASSWORD)
    return server, route


def dialogue(page: str) -> list[str]:
    """The dialogue's lines as shown: "C: EHLO ...", "S: 250 ...", "* connection closed"."""
    section = page.split('class="smtprelay-dialogue"', 1)[1].split("</form>", 1)[0]
    found = re.findall(
        r'<div class="(client|server|note)">(?:<span class="who">[CS]:</span>)?(.*?)</div>', section
    )
    marks = {"client": "C: ", "server": "S: ", "note": ""}
    return [marks[side] + html.unescape(text).strip() for side, text in found]


def in_order(lines: list[str], prefixes: list[str]) -> bool:
    """Whether lines starting with ``prefixes`` come in that order (smtplib writes "ehlo")."""
    at = 0
    for prefix in prefixes:
        at = next(
            (i for i in range(at, len(lines)) if lines[i].upper().startswith(prefix.upper())), -1
        )
        if at < 0:
            return False
        at += 1
    return True


def assert_no_secret(page: str) -> None:
    for secret in (PASSWORD, PLAIN_BLOB, base64.b64encode(PASSWORD.encode()).decode()):
        assert secret not in page


def test_test_connection_shows_ehlo_starttls_and_auth_masked(admin_client, tls_route):
    server, route = tls_route
    change = admin_client.get(f"/admin/django_smtprelay/route/{route.pk}/change/").content.decode()
    assert tool_url(route, "test-connection") in change
    assert tool_url(route, "send-test-message") in change
    response = admin_client.post(tool_url(route, "test-connection"))
    page = response.content.decode()
    assert response.status_code == 200
    assert "Worked" in page and "logged in as relayuser; no mail sent" in page
    lines = dialogue(page)
    order = ["S: 220", "C: EHLO", "S: 250", "C: STARTTLS", "S: 220", "C: EHLO", "S: 250"]
    assert in_order(lines, [*order, "C: AUTH PLAIN ******", "S: 235", "C: QUIT", "S: 221"]), lines
    assert lines[0].startswith("* connecting to 127.0.0.1") and lines[-1] == "* connection closed"
    assert_no_secret(page)
    assert server.sessions == 1 and server.messages == []


def test_auth_login_challenges_are_masked_too(admin_client, smtp_server, make_route, trust_test_ca):
    """A relay that offers only LOGIN gets the user and password as answers to 334s."""
    server = smtp_server(tls="starttls", auth={"relayuser": PASSWORD}, auth_mechanisms=("LOGIN",))
    route = make_route(server, security="starttls", username="relayuser", password=PASSWORD)
    page = admin_client.post(tool_url(route, "test-connection")).content.decode()
    lines = dialogue(page)
    assert in_order(lines, ["C: AUTH LOGIN ******", "S: 334", "C: ******", "S: 235"]), lines
    assert_no_secret(page)


def test_a_failing_relay_shows_the_reason_and_its_classification(
    admin_client, smtp_server, make_route, trust_test_ca
):
    server = smtp_server(tls="starttls", auth={"relayuser": "another-password"})
    route = make_route(server, security="starttls", username="relayuser", password=PASSWORD)
    page = admin_client.post(tool_url(route, "test-connection")).content.decode()
    assert "Failed" in page and "route_fault" in page
    assert in_order(dialogue(page), ["C: AUTH PLAIN ******", "S: 535", "C: QUIT"])
    assert_no_secret(page)


def test_a_relay_that_refuses_connections_says_so(admin_client, make_route, refused_port):
    route = make_route(port=refused_port)
    page = admin_client.post(tool_url(route, "test-connection")).content.decode()
    assert "Failed" in page and "Connection refused" in page and "route_fault" in page
    assert dialogue(page) == [f"* connecting to 127.0.0.1 port {refused_port}"]


def test_send_a_test_message_reaches_the_typed_recipient(admin_client, tls_route):
    server, route = tls_route
    form = admin_client.get(tool_url(route, "send-test-message")).content.decode()
    assert 'name="recipient"' in form and server.sessions == 0  # a GET sends nothing
    response = admin_client.post(
        tool_url(route, "send-test-message"),
        {"recipient": "ops@example.net", "sender": "Ops Team <admin@example.com>"},
    )
    page = response.content.decode()
    assert "the relay accepted the message for ops@example.net" in page
    (received,) = server.messages
    assert received.rcpt_tos == ("ops@example.net",) and received.mail_from == "admin@example.com"
    assert received.auth_user == "relayuser" and received.tls
    assert b"Subject: Test message through route " + route.name.encode() in received.data
    assert b"From: Ops Team <admin@example.com>" in received.data
    order = ["C: MAIL FROM:<admin@example.com>", "C: RCPT TO:<ops@example.net>", "C: DATA"]
    assert in_order(dialogue(page), [*order, "S: 250", "S: 250", "S: 354", "C: .", "S: 250"])
    assert_no_secret(page)
    # Straight through the route: nothing queued, recorded or counted.
    assert not Message.objects.exists() and not DeliveryAttempt.objects.exists()
    assert not RouteHealth.objects.exists()


def test_a_refused_recipient_shows_the_reply(admin_client, smtp_server, make_route):
    server = smtp_server(rcpt_replies={"nobody@example.net": "550 5.1.1 no such user"})
    route = make_route(server)
    page = admin_client.post(
        tool_url(route, "send-test-message"),
        {"recipient": "nobody@example.net", "sender": "admin@example.com"},
    ).content.decode()
    assert "Failed" in page and "permanent" in page and "550 5.1.1 no such user" in page
    assert server.messages == []


def test_a_bad_recipient_is_refused_by_the_form(admin_client, smtp_server, make_route):
    server = smtp_server()
    route = make_route(server)
    response = admin_client.post(
        tool_url(route, "send-test-message"), {"recipient": "not an address", "sender": "a@b.c"}
    )
    assert (
        response.status_code == 200 and "Enter a valid email address" in response.content.decode()
    )
    assert server.sessions == 0


def test_a_sender_with_a_line_break_is_refused_by_the_form(admin_client, smtp_server, make_route):
    server = smtp_server()
    route = make_route(server)
    response = admin_client.post(
        tool_url(route, "send-test-message"),
        {"recipient": "ops@example.net", "sender": "a@example.com\nBcc: x@example.org"},
    )
    assert response.status_code == 200 and "must be one line" in response.content.decode()
    assert server.sessions == 0


def test_a_short_password_is_not_given_away_by_masking_ordinary_text(
    admin_client, smtp_server, make_route, trust_test_ca
):
    # Masking every "250" in the dialogue would tell a reader the password.
    server = smtp_server(tls="starttls", auth={"relayuser": "250"})
    route = make_route(server, security="starttls", username="relayuser", password="250")
    page = admin_client.post(tool_url(route, "test-connection")).content.decode()
    lines = dialogue(page)
    assert in_order(lines, ["S: 250", "C: AUTH PLAIN ******", "S: 235"]), lines
    assert base64.b64encode(b"\0relayuser\0250").decode() not in page


@pytest.mark.parametrize("tool", ["test-connection", "send-test-message"])
def test_the_tools_need_the_change_permission(tool, smtp_server, make_route):
    server = smtp_server()
    route = make_route(server)
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_route"))
    client = Client()
    client.force_login(viewer)
    data = {"recipient": "ops@example.net", "sender": "admin@example.com"}
    assert client.get(tool_url(route, tool)).status_code == 403
    assert client.post(tool_url(route, tool), data).status_code == 403
    change = client.get(f"/admin/django_smtprelay/route/{route.pk}/change/").content.decode()
    assert tool_url(route, tool) not in change
    assert server.sessions == 0


def test_the_tools_post_only_with_csrf(admin_user, smtp_server, make_route):
    server = smtp_server()
    route = make_route(server)
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    assert client.post(tool_url(route, "test-connection")).status_code == 403
    assert server.sessions == 0
