"""Direct-to-MX delivery through the engine, against loopback DNS and SMTP servers."""

from __future__ import annotations

import pytest
from django.core.mail import EmailMessage

from django_smtprelay.delivery import DeliveryEngine
from django_smtprelay.models import DeliveryAttempt, Message, Recipient, Route, Suppression
from django_smtprelay.transports import mx_hosts

pytestmark = pytest.mark.django_db


def queue(*to: str, subject: str = "Hello") -> Message:
    EmailMessage(subject, "Body", "sender@example.com", list(to)).send()
    return Message.objects.latest("pk")


def status(message: Message) -> dict[str, str]:
    return dict(message.recipients.values_list("address", "status"))


def test_a_down_host_and_a_busy_host_are_passed_for_the_next_preference(
    smtp_server, refused_port, mx_settings, mx_route
):
    busy = smtp_server(mail_reply="451 4.3.0 try again later")
    ok = smtp_server()
    mx_settings(
        {"mx-down.multi.test": refused_port, "mx-busy.multi.test": busy, "mx-ok.multi.test": ok}
    )
    mx_route()
    message = queue("a@multi.test", "b@multi.test")
    report = DeliveryEngine().run()
    assert report.sent == 1
    (received,) = ok.messages
    assert sorted(received.rcpt_tos) == ["a@multi.test", "b@multi.test"]  # one transaction
    assert busy.transactions == 1 and not busy.messages
    attempt = message.attempts.get()
    assert attempt.outcome == DeliveryAttempt.Outcome.DELIVERED
    assert "mx-ok.multi.test [127.0.0.1]" in attempt.reply


def test_when_every_host_fails_the_recipient_is_deferred_naming_each(
    smtp_server, refused_port, mx_settings, mx_route
):
    busy = smtp_server(rcpt_replies={"a@down.test": "450 4.2.0 mailbox busy"})
    mx_settings({"mx1.down.test": refused_port, "mx2.down.test": busy})
    mx_route()
    message = queue("a@down.test")
    DeliveryEngine().run()
    message.refresh_from_db()
    assert status(message) == {"a@down.test": Recipient.Status.DEFERRED}
    assert message.status == Message.Status.DEFERRED
    reason = message.recipients.get().reply
    assert "no MX host of down.test took the message" in reason
    assert "mx1.down.test [127.0.0.1]: Connection refused" in reason
    assert "mx2.down.test [127.0.0.1]: 450 4.2.0 mailbox busy" in reason
    # A domain that is down is not the route's fault: its circuit stays closed.
    assert message.attempts.get().outcome == DeliveryAttempt.Outcome.TRANSIENT


def test_a_5xx_from_an_mx_is_the_recipients_answer_not_a_route_fault(
    smtp_server, mx_settings, mx_route, make_route
):
    blocked = "550 5.7.1 Service unavailable; client host blocked using zen.spamhaus.org"
    ok = smtp_server(rcpt_replies={"a@multi.test": blocked})
    relay = smtp_server()
    mx_settings({"mx-down.multi.test": ok, "mx-busy.multi.test": ok, "mx-ok.multi.test": ok})
    mx_route(priority=10)
    make_route(relay, priority=20)  # a relay that would take it, if failed over
    message = queue("a@multi.test")
    DeliveryEngine().run()
    assert status(message) == {"a@multi.test": Recipient.Status.FAILED}
    assert relay.sessions == 0
    assert ok.transactions == 1  # not tried at the next host either


def test_a_null_mx_fails_the_domains_recipients_at_once(smtp_server, mx_settings, mx_route):
    ok = smtp_server()
    mx_settings({"amx.test": ok})
    mx_route()
    message = queue("a@nullmx.test", "b@amx.test")
    DeliveryEngine().run()
    assert status(message) == {
        "a@nullmx.test": Recipient.Status.FAILED,
        "b@amx.test": Recipient.Status.DELIVERED,
    }
    failed = message.recipients.get(address="a@nullmx.test")
    assert "accepts no mail (null MX, RFC 7505)" in failed.reply
    assert failed.enhanced_code == "5.1.10"
    assert Suppression.objects.filter(address="a@nullmx.test").exists()
    assert [list(m.rcpt_tos) for m in ok.messages] == [["b@amx.test"]]


def test_a_domain_without_mx_gets_mail_at_its_address(smtp_server, mx_settings, mx_route):
    ok = smtp_server()
    mx_settings({"amx.test": ok})
    mx_route()
    queue("a@amx.test")
    assert DeliveryEngine().run().sent == 1
    assert list(ok.messages[0].rcpt_tos) == ["a@amx.test"]


def test_a_domain_that_does_not_exist_fails(mx_settings, mx_route):
    mx_settings({})
    mx_route()
    message = queue("a@no-such-domain.test")
    DeliveryEngine().run()
    assert status(message) == {"a@no-such-domain.test": Recipient.Status.FAILED}
    assert "does not exist (NXDOMAIN)" in message.recipients.get().reply


def test_recipients_are_grouped_by_domain_and_sessions_reused_per_host(
    smtp_server, mx_settings, mx_route
):
    amx, multi = smtp_server(), smtp_server()
    mx_settings({"amx.test": amx, "mx-down.multi.test": multi})
    mx_route()
    queue("a@amx.test", "b@multi.test", "c@amx.test", subject="one")
    queue("d@amx.test", subject="two")
    report = DeliveryEngine().run()
    assert report.sent == 2
    assert [sorted(m.rcpt_tos) for m in amx.messages] == [
        ["a@amx.test", "c@amx.test"],
        ["d@amx.test"],
    ]
    assert [list(m.rcpt_tos) for m in multi.messages] == [["b@multi.test"]]
    assert amx.sessions == 1 and multi.sessions == 1


@pytest.mark.parametrize("reverse", [False, True])
def test_equal_preferences_are_tried_in_random_order(
    smtp_server, mx_settings, mx_route, monkeypatch, reverse
):
    a, b = smtp_server(), smtp_server()
    mx_settings({"mx-a.equal.test": a, "mx-b.equal.test": b})
    shuffled = []

    def shuffle(names):
        shuffled.append(list(names))
        if reverse:
            names.reverse()

    monkeypatch.setattr(mx_hosts, "shuffle", shuffle)
    mx_route()
    queue("x@equal.test")
    DeliveryEngine().run()
    assert sorted(shuffled[0]) == ["mx-a.equal.test", "mx-b.equal.test"]
    first = b if shuffled[0][0] == "mx-a.equal.test" and reverse else a
    if shuffled[0][0] == "mx-b.equal.test":
        first = a if reverse else b
    assert len(first.messages) == 1
    assert len(a.messages) + len(b.messages) == 1


def test_private_addresses_are_refused_unless_allowed(smtp_server, mx_settings, mx_route):
    ok = smtp_server()
    mx_settings({"amx.test": ok}, MX_PRIVATE_ADDRESSES=False)
    mx_route()
    message = queue("a@amx.test")
    DeliveryEngine().run()
    assert status(message) == {"a@amx.test": Recipient.Status.DEFERRED}
    assert "127.0.0.1 is not a public address" in message.recipients.get().reply
    assert ok.sessions == 0


def test_an_mx_route_takes_no_username():
    route = Route(name="direct", kind=Route.Kind.MX, username="someone")
    with pytest.raises(Exception, match="logs in nowhere"):
        route.clean()
    assert repr(Route(name="direct", kind=Route.Kind.MX)) == (
        "<Route 'direct' mx tls=opportunistic priority=100>"
    )


def test_a_recipient_refused_with_4xx_moves_to_the_next_host_alone(
    smtp_server, mx_settings, mx_route
):
    first = smtp_server(rcpt_replies={"a@multi.test": "450 4.2.1 try later"})
    second = smtp_server()
    mx_settings({"mx-down.multi.test": first, "mx-busy.multi.test": second})
    mx_route()
    message = queue("a@multi.test", "b@multi.test")
    DeliveryEngine().run()
    assert set(status(message).values()) == {Recipient.Status.DELIVERED}
    assert [list(m.rcpt_tos) for m in first.messages] == [["b@multi.test"]]
    assert [list(m.rcpt_tos) for m in second.messages] == [["a@multi.test"]]


def test_a_reply_lost_after_the_dot_is_not_sent_again_to_another_host(
    smtp_server, mx_settings, mx_route
):
    first = smtp_server(drop_after_dot=True)
    second = smtp_server()
    mx_settings({"mx-down.multi.test": first, "mx-busy.multi.test": second})
    mx_route()
    message = queue("a@multi.test")
    DeliveryEngine().run()
    message.refresh_from_db()
    assert status(message) == {"a@multi.test": Recipient.Status.DEFERRED}
    assert message.possible_duplicate
    assert second.sessions == 0


def test_a_session_the_host_closed_while_idle_is_opened_again(smtp_server, mx_settings, mx_route):
    import time

    from django_smtprelay.routing import RouteSpec
    from django_smtprelay.transports.base import Envelope
    from django_smtprelay.transports.mx import MXTransport

    server = smtp_server()
    mx_settings({"amx.test": server})
    transport = MXTransport(RouteSpec.from_route(mx_route()))
    transport.open()
    data = b"Subject: x\r\n\r\nBody\r\n"
    try:
        first = transport.send(Envelope("s@example.com", ["a@amx.test"], data))
        assert first.verdict.outcome == "delivered"
        for connection in list(server._connections):  # the host hangs up on the idle session
            server._loop.call_soon_threadsafe(connection.transport.close)
        time.sleep(0.2)
        second = transport.send(Envelope("s@example.com", ["b@amx.test"], data))
    finally:
        transport.close()
    assert second.verdict.outcome == "delivered", second.reply
    assert server.sessions == 2 and len(server.messages) == 2


def test_a_failed_mx_lookup_defers(mx_settings, mx_route):
    mx_settings({})
    mx_route()
    message = queue("a@servfail.test")
    DeliveryEngine().run()
    assert status(message) == {"a@servfail.test": Recipient.Status.DEFERRED}
    assert "the MX lookup for servfail.test failed" in message.recipients.get().reply


def test_mx_lookups_are_cached_for_their_ttl(smtp_server, mx_settings, mx_route, mx_dns):
    ok = smtp_server()
    mx_settings({"amx.test": ok, "mx-down.multi.test": ok})
    mx_route()
    before = sum(n for (name, kind, _), n in mx_dns.queries.items() if name == "multi.test")
    queue("a@multi.test")
    DeliveryEngine().run()
    queue("b@multi.test")
    DeliveryEngine().run()  # another batch, another transport: the cache answers
    after = sum(n for (name, kind, _), n in mx_dns.queries.items() if name == "multi.test")
    assert after - before == 1
    assert len(ok.messages) == 2


def test_an_mx_host_with_only_an_ipv6_address(smtp_server, mx_settings, mx_route):
    try:
        server = smtp_server(host="::1")
    except RuntimeError as exc:
        pytest.skip(f"no IPv6 loopback here ({exc}); a host with ::1 runs this")
    mx_settings({"mx.v6.test": server})
    mx_route()
    message = queue("a@v6.test")
    DeliveryEngine().run()
    assert status(message) == {"a@v6.test": Recipient.Status.DELIVERED}
    assert "mx.v6.test [::1]" in message.attempts.get().reply
