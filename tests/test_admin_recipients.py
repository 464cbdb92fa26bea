"""The recipients list finds every failed delivery, whatever its message's state."""

from datetime import timedelta

import pytest
from django.core.mail import send_mail
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_smtprelay.delivery import DeliveryEngine
from django_smtprelay.models import Message, Recipient, Suppression

pytestmark = pytest.mark.django_db

URL = "/admin/django_smtprelay/recipient/"
LONG_REPLY = (
    "550 5.1.1 <gone@example.com>: Recipient address rejected: User unknown in virtual "
    "mailbox table; see https://help.example.net/smtp/5.1.1 for what to do next"
)


@pytest.fixture
def delivered_mixed(smtp_server, make_route):
    """One message sent to a good, a rejected and a suppressed address, over a real relay."""
    server = smtp_server(rcpt_replies={"gone@example.com": LONG_REPLY})
    route = make_route(server, name="primary")
    Suppression.objects.create(address="blocked@other.example", reason="complaint")
    send_mail(
        "Mixed fate",
        "Body",
        "from@example.com",
        ["ok@example.com", "gone@example.com", "blocked@other.example"],
    )
    DeliveryEngine().run()
    return route


def test_a_failed_recipient_of_a_sent_message_is_listed_with_the_whole_reply(
    admin_client, delivered_mixed
):
    assert Message.objects.get().status == Message.Status.SENT
    page = admin_client.get(URL, {"status": "failed"}).content.decode()
    assert "gone@example.com" in page and "ok@example.com" not in page
    assert LONG_REPLY.replace("<", "&lt;").replace(">", "&gt;") in page  # whole, not cut
    assert "white-space:pre-wrap" in page
    message = Message.objects.get()
    assert f"/admin/django_smtprelay/message/{message.pk}/change/" in page
    assert "Mixed fate" in page and "primary" in page and "5.1.1" in page


def test_a_suppressed_recipient_without_any_attempt_is_listed(admin_client, delivered_mixed):
    page = admin_client.get(URL, {"status": "suppressed"}).content.decode()
    page = page.replace("<wbr>", "")  # an address may break before its "@"
    assert "blocked@other.example" in page and "gone@example.com" not in page


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"domain": "other.example"}, {"blocked@other.example"}),
        ({"q": "@other.example"}, {"blocked@other.example"}),
        ({"q": "gone@"}, {"gone@example.com"}),
        ({"code": "5xx"}, {"gone@example.com"}),
        ({"code": "550"}, {"gone@example.com"}),
        ({"status": "delivered"}, {"ok@example.com"}),
    ],
)
def test_filters_and_search_by_domain_code_and_address(
    admin_client, delivered_mixed, params, expected
):
    response = admin_client.get(URL, params)
    assert response.status_code == 200
    shown = {r.address for r in response.context["cl"].result_list}
    assert shown == expected


def test_the_route_filter(admin_client, delivered_mixed):
    response = admin_client.get(URL, {"route__id__exact": delivered_mixed.pk})
    shown = {r.address for r in response.context["cl"].result_list}
    assert shown == {"ok@example.com", "gone@example.com"}  # the suppressed one took no route


def test_time_filter_uses_the_update_or_for_never_tried_ones_the_message_creation(admin_client):
    now = timezone.now()
    send_mail("Old", "Body", "from@example.com", ["old@example.com"])
    send_mail("Recent", "Body", "from@example.com", ["recent@example.com"])
    send_mail("Fresh", "Body", "from@example.com", ["fresh@example.com"])  # never tried
    Message.objects.filter(subject="Old").update(created_at=now - timedelta(days=3))
    Message.objects.filter(subject="Recent").update(created_at=now - timedelta(days=3))
    Recipient.objects.filter(address="old@example.com").update(
        status="failed", updated_at=now - timedelta(hours=30)
    )
    Recipient.objects.filter(address="recent@example.com").update(
        status="failed", updated_at=now - timedelta(minutes=10)
    )

    def shown(window):
        response = admin_client.get(URL, {"updated": window})
        return {r.address for r in response.context["cl"].result_list}

    assert shown("1h") == {"recent@example.com", "fresh@example.com"}
    assert shown("24h") == {"recent@example.com", "fresh@example.com"}
    assert shown("7d") == {"old@example.com", "recent@example.com", "fresh@example.com"}


def test_recipient_pages_are_read_only(admin_client, delivered_mixed):
    rcpt = Recipient.objects.get(address="gone@example.com")
    url = f"{URL}{rcpt.pk}/change/"
    page = admin_client.get(url)
    assert page.status_code == 200 and b'name="_save"' not in page.content
    assert admin_client.post(url, {"status": "delivered"}).status_code == 403
    assert Recipient.objects.get(pk=rcpt.pk).status == Recipient.Status.FAILED
    assert admin_client.get(f"{URL}add/").status_code == 403


def _fill(count):
    Message.objects.all().delete()
    for i in range(count):
        send_mail(f"s{i}", "Body", "from@example.com", [f"r{i}@example.com"])
    Recipient.objects.update(status="failed", smtp_code=550, reply="550 no")


def _queries_for_list(client, count):
    _fill(count)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(URL, {"status": "failed"})
    assert len(response.context["cl"].result_list) == count
    return len(queries)


def test_the_list_costs_the_same_queries_for_5_or_100_recipients(
    admin_client, make_route, django_assert_max_num_queries
):
    make_route(port=1, name="a")
    few = _queries_for_list(admin_client, 5)
    _fill(100)
    # session, user, the route, domain and code choices, the count, the page
    with django_assert_max_num_queries(few):
        response = admin_client.get(URL, {"status": "failed"})
    assert len(response.context["cl"].result_list) == 100
    assert few <= 7
