"""A message's page: titled by subject, the whole last error, a timeline, and its
content (sandboxed preview, .eml) only for staff allowed to read bodies."""

import html

import pytest
from django.contrib.auth.models import Permission, User
from django.core.mail import EmailMultiAlternatives, send_mail
from django.db import connection
from django.test.utils import CaptureQueriesContext

from django_smtprelay.delivery import DeliveryEngine
from django_smtprelay.models import Message

pytestmark = pytest.mark.django_db

LIST = "/admin/django_smtprelay/message/"
HTML = (
    '<p>Hello <b>there</b></p><img src="https://tracker.example/open.gif">'
    "<script>parent.document.title='owned'</script>"
)
LONG_ERROR = (
    "451 4.7.1 <to@example.com>: Recipient address rejected: Greylisted for 5 minutes, "
    "please come back later; see https://postmaster.example.net/greylisting.html"
)


def page_of(client, message):
    return client.get(f"{LIST}{message.pk}/change/")


def staff(*codenames):
    user = User.objects.create_user("staff", "staff@example.com", "pw", is_staff=True)
    perms = Permission.objects.filter(
        content_type__app_label="django_smtprelay", codename__in=codenames
    )
    user.user_permissions.set(perms)
    return user


@pytest.fixture
def html_message(smtp_server, make_route):
    server = smtp_server(rcpt_replies={"gone@example.com": "550 5.1.1 No such user"})
    make_route(server, name="primary")
    mail = EmailMultiAlternatives(
        "Your receipt",
        "Hello there (text)",
        "from@example.com",
        ["to@example.com", "gone@example.com"],
    )
    mail.attach_alternative(HTML, "text/html")
    mail.send()
    DeliveryEngine().run()
    return Message.objects.get()


def test_the_page_is_titled_by_the_subject(admin_client, html_message):
    text = page_of(admin_client, html_message).content.decode()
    assert "<title>Your receipt | " in text
    assert "&lt;&lt;" not in text.split("</title>")[0]  # not <<id@host>>
    assert str(html_message) == "Your receipt"


def test_the_html_part_is_sandboxed_and_loads_nothing_remote(admin_client, html_message):
    text = page_of(admin_client, html_message).content.decode()
    assert 'sandbox=""' in text
    start = text.index('srcdoc="') + len('srcdoc="')
    srcdoc = html.unescape(text[start : text.index('"', start)])
    assert srcdoc.startswith(
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "img-src data: cid:; style-src 'unsafe-inline'\">"
    )
    assert "<b>there</b>" in srcdoc
    # The message's markup lives only inside the attribute, never in the page itself.
    assert "<script>parent" not in text and 'src="https://tracker.example' not in text
    assert "Hello there (text)" in text  # the text part


def test_the_timeline_lists_attempts_and_recipient_events_in_time_order(admin_client, html_message):
    response = page_of(admin_client, html_message)
    events = response.context["timeline"].events
    assert [e.at for e in events] == sorted(e.at for e in events)
    kinds = [e.kind for e in events]
    assert kinds[0] == "queued" and "attempt" in kinds and kinds[-1] == "sent"
    rcpt_events = {e.label for e in events if e.kind == "recipient"}
    assert rcpt_events == {"to@example.com: Delivered", "gone@example.com: Failed"}
    assert "550 5.1.1 No such user" in response.content.decode()


def test_the_eml_download_is_the_exact_bytes(admin_client, html_message):
    response = admin_client.get(f"{LIST}{html_message.pk}/eml/")
    assert response.status_code == 200
    assert response["Content-Type"] == "message/rfc822"
    assert f'filename="message-{html_message.pk}.eml"' in response["Content-Disposition"]
    assert response.content == html_message.raw
    assert f"{LIST}{html_message.pk}/eml/" in page_of(admin_client, html_message).content.decode()


@pytest.mark.parametrize("bad_id", ["999999", "not-a-number"])
def test_the_eml_of_an_unknown_message_is_404(admin_client, bad_id):
    assert admin_client.get(f"{LIST}{bad_id}/eml/").status_code == 404


def test_staff_without_the_body_permission_see_envelope_and_states_only(client, html_message):
    client.force_login(staff("view_message"))
    response = page_of(client, html_message)
    text = response.content.decode()
    assert response.status_code == 200
    assert "Your receipt" in text and "gone@example.com" in text and "No such user" in text
    assert "Hello there" not in text and "srcdoc" not in text and "/eml/" not in text
    assert "Content-Type: multipart" not in text  # no headers either
    assert client.get(f"{LIST}{html_message.pk}/eml/").status_code == 403


def test_staff_with_the_body_permission_see_the_content(client, html_message):
    client.force_login(staff("view_message", "view_message_body"))
    text = page_of(client, html_message).content.decode()
    assert "Hello there (text)" in text and "srcdoc" in text
    assert client.get(f"{LIST}{html_message.pk}/eml/").content == html_message.raw


def test_the_list_shows_the_whole_last_error_wrapped(admin_client):
    send_mail("Greylisted", "Body", "from@example.com", ["to@example.com"])
    Message.objects.update(status=Message.Status.DEFERRED, last_error=LONG_ERROR)
    text = admin_client.get(LIST).content.decode()
    assert html.escape(LONG_ERROR, quote=False) in text
    assert "white-space:pre-wrap" in text


def test_filters_by_route_recipient_domain_and_age(admin_client, smtp_server, make_route):
    from datetime import timedelta

    from django.utils import timezone

    one, two = smtp_server(), smtp_server()
    first = make_route(one, name="first", tags="a")
    make_route(two, name="second", tags="b")
    m1 = EmailMultiAlternatives("via first", "b", "from@example.com", ["x@one.example"])
    m1.smtprelay_route = "a"
    m1.send()
    m2 = EmailMultiAlternatives("via second", "b", "from@example.com", ["y@two.example"])
    m2.smtprelay_route = "b"
    m2.send()
    DeliveryEngine().run()
    Message.objects.filter(subject="via second").update(
        created_at=timezone.now() - timedelta(days=2)
    )

    def shown(params):
        response = admin_client.get(LIST, params)
        assert response.status_code == 200
        return {m.subject for m in response.context["cl"].result_list}

    assert shown({"route": first.pk}) == {"via first"}
    assert shown({"domain": "two.example"}) == {"via second"}
    assert shown({"q": "@one.example"}) == {"via first"}
    assert shown({"age": "1h"}) == {"via first"}
    assert shown({"age": "over-24h"}) == {"via second"}


def test_a_part_in_an_unknown_charset_is_previewed_not_crashed_on():
    from django_smtprelay.admin.message_body import preview

    raw = (
        b"Subject: odd\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=x-no-such-charset\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\nCaf\xc3\xa9 ok\r\n"
    )
    shown = preview(raw)
    assert shown.text is not None and "Caf" in shown.text and "ok" in shown.text
    assert shown.html_srcdoc is None and "Subject: odd" in shown.headers


@pytest.mark.django_db
def test_the_message_page_costs_the_same_queries_for_2_or_40_recipients(
    admin_client, smtp_server, make_route, django_assert_max_num_queries
):
    make_route(smtp_server())
    send_mail("Few", "Body", "from@example.com", ["a@example.com", "b@example.com"])
    send_mail("Many", "Body", "from@example.com", [f"r{i}@example.com" for i in range(40)])
    DeliveryEngine().run()
    few, many = (Message.objects.get(subject=s) for s in ("Few", "Many"))
    url = "/admin/django_smtprelay/message/{}/change/"
    with CaptureQueriesContext(connection) as small:
        assert admin_client.get(url.format(few.pk)).status_code == 200
    with django_assert_max_num_queries(len(small)):
        assert admin_client.get(url.format(many.pk)).status_code == 200


@pytest.mark.django_db
def test_a_message_with_10000_recipients_and_500_attempts_shows_the_first_50_of_each(
    admin_client, smtp_server, make_route, django_assert_max_num_queries
):
    from django.utils import timezone

    from django_smtprelay.admin.message_inlines import SHOWN
    from django_smtprelay.models import DeliveryAttempt, Recipient

    make_route(smtp_server())
    send_mail("Small", "Body", "from@example.com", ["a@example.com", "b@example.com"])
    send_mail("Bulk", "Body", "from@example.com", ["first@example.com"])
    DeliveryEngine().run()
    small, bulk = (Message.objects.get(subject=s) for s in ("Small", "Bulk"))
    now = timezone.now()
    Recipient.objects.bulk_create(
        Recipient(message=bulk, address=f"r{i:05}@example.com", status="failed", updated_at=now)
        for i in range(9_999)
    )
    attempt = DeliveryAttempt.objects.get(message=bulk)
    # One attempt that carried every recipient names the first ten of them.
    results = [{"address": f"r{i:05}@example.com", "outcome": "permanent"} for i in range(9_999)]
    DeliveryAttempt.objects.filter(pk=attempt.pk).update(recipients=results)
    DeliveryAttempt.objects.bulk_create(
        DeliveryAttempt(message=bulk, route_name="r", outcome="transient", started_at=now)
        for _ in range(499)
    )
    url = "/admin/django_smtprelay/message/{}/change/"
    with CaptureQueriesContext(connection) as few:
        assert admin_client.get(url.format(small.pk)).status_code == 200
    # A count per capped table more than a small message: never a row per recipient.
    with django_assert_max_num_queries(len(few) + 4):
        page = admin_client.get(url.format(bulk.pk)).content.decode()
    assert page.count("@example.com") < 4 * SHOWN + 20, "not every recipient"
    assert "first@example.com" in page.replace("<wbr>", "")
    assert "r09998@" not in page.replace("<wbr>", "")
    assert f"The first {SHOWN} of 10000 recipients are shown." in page
    assert f"The first {SHOWN} of 500 delivery attempts are shown." in page
    assert f"The first {SHOWN} of 500 attempts are in the timeline." in page
    assert f"The first {SHOWN} of 10000 recipient events are in the timeline." in page
    assert "r00009@example.com: permanent; and 9989 more" in page
    rcpt_list = f"/admin/django_smtprelay/recipient/?message__id__exact={bulk.pk}"
    attempt_list = f"/admin/django_smtprelay/deliveryattempt/?message__id__exact={bulk.pk}"
    assert f'href="{rcpt_list}"' in page and f'href="{attempt_list}"' in page
    # The links list the rest: every one of this message's rows, and no other message's.
    listed = admin_client.get(rcpt_list + "&q=r09998@example.com").content.decode()
    assert "r09998" in listed and "a@example.com" not in listed.replace("<wbr>", "")
    attempts = admin_client.get(attempt_list)
    assert attempts.status_code == 200 and attempts.context["cl"].result_count == 500
    assert attempt.pk in {a.pk for a in attempts.context["cl"].queryset}
    # A small message says nothing of the kind.
    small_page = admin_client.get(url.format(small.pk)).content.decode()
    assert "are shown." not in small_page and "in the timeline." not in small_page
