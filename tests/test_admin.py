"""The control room renders and its actions do what they say."""

from pathlib import Path

import pytest
from django.core.mail import send_mail

from django_smtprelay.delivery import DeliveryEngine
from django_smtprelay.models import Message

pytestmark = pytest.mark.django_db


def test_queue_pages_show_recipients_attempts_and_the_exact_reply(
    admin_client, smtp_server, make_route
):
    server = smtp_server(rcpt_replies={"gone@example.com": "550 5.1.1 Recipient address rejected"})
    make_route(server, name="primary")
    send_mail("Admin view", "Body", "from@example.com", ["ok@example.com", "gone@example.com"])
    DeliveryEngine().run()
    message = Message.objects.get()
    listing = admin_client.get("/admin/django_smtprelay/message/?status__exact=sent")
    assert listing.status_code == 200 and b"Admin view" in listing.content
    page = admin_client.get(
        f"/admin/django_smtprelay/message/{message.pk}/change/"
    ).content.decode()
    assert "Recipient address rejected" in page
    assert "gone@example.com" in page and "primary" in page
    assert "Subject: Admin view" in page
    attempts = admin_client.get("/admin/django_smtprelay/deliveryattempt/")
    assert attempts.status_code == 200


def test_cancel_and_retry_actions(admin_client):
    send_mail("A", "Body", "from@example.com", ["to@example.com"])
    message = Message.objects.get()
    Message.objects.update(status=Message.Status.DEFERRED)
    url = "/admin/django_smtprelay/message/"
    response = admin_client.post(
        url, {"action": "retry_now", "_selected_action": [message.pk]}, follow=True
    )
    assert b"1 message is being sent now." in response.content
    response = admin_client.post(
        url, {"action": "cancel", "_selected_action": [message.pk]}, follow=True
    )
    assert b"1 message cancelled." in response.content
    assert Message.objects.get().status == Message.Status.CANCELLED


def test_route_and_suppression_pages_render(admin_client, make_route, refused_port):
    make_route(port=refused_port, name="r1")
    for url in (
        "/admin/django_smtprelay/route/",
        "/admin/django_smtprelay/route/add/",
        "/admin/django_smtprelay/suppression/",
        "/admin/",
    ):
        assert admin_client.get(url).status_code == 200, url


def staff_with(*codenames: str):
    from django.contrib.auth.models import Permission, User

    user = User.objects.create_user("staff", "staff@example.com", "pw", is_staff=True)
    app_perms = Permission.objects.filter(content_type__app_label="django_smtprelay")
    user.user_permissions.set(app_perms.filter(codename__in=codenames))
    return user


def test_a_post_to_a_message_page_never_rewrites_the_row_a_worker_holds(admin_client):
    import uuid
    from datetime import timedelta

    from django.utils import timezone

    send_mail("Held", "Body", "from@example.com", ["to@example.com"])
    lease = uuid.uuid4()
    Message.objects.update(
        status=Message.Status.SENDING,
        lease_token=lease,
        lease_expires_at=timezone.now() + timedelta(minutes=5),
    )
    before = Message.objects.values().get()
    url = f"/admin/django_smtprelay/message/{before['id']}/change/"
    response = admin_client.post(
        url,
        {
            "status": Message.Status.FAILED,
            "from_domain": "elsewhere.example",
            "retry_route": "other",
            "recipients-TOTAL_FORMS": "0",
            "recipients-INITIAL_FORMS": "0",
            "attempts-TOTAL_FORMS": "0",
            "attempts-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 403
    assert Message.objects.values().get() == before
    page = admin_client.get(url).content.decode()
    assert 'name="_save"' not in page and "Held" in page


@pytest.mark.parametrize("codename", ["view_message", "change_message"])
def test_message_pages_stay_readable_with_view_or_change_permission(client, codename):
    send_mail("Readable", "Body", "from@example.com", ["to@example.com"])
    client.force_login(staff_with(codename))
    message = Message.objects.get()
    page = client.get(f"/admin/django_smtprelay/message/{message.pk}/change/")
    assert page.status_code == 200 and b"Readable" in page.content
    assert b'name="_save"' not in page.content
    listing = client.get("/admin/django_smtprelay/message/")
    assert listing.status_code == 200
    assert (b'value="cancel"' in listing.content) == (codename == "change_message")


def test_the_cancel_action_cancels_recipients_and_counts_what_it_skipped(admin_client):
    from datetime import timedelta

    from django.utils import timezone

    from django_smtprelay.models import Recipient

    for subject in ("one", "two", "held", "done"):
        send_mail(subject, "Body", "from@example.com", ["a@example.com", "b@example.com"])
    Message.objects.filter(subject="held").update(
        status=Message.Status.SENDING, lease_expires_at=timezone.now() + timedelta(minutes=5)
    )
    Message.objects.filter(subject="done").update(status=Message.Status.SENT)
    response = admin_client.post(
        "/admin/django_smtprelay/message/",
        {
            "action": "cancel",
            "_selected_action": list(Message.objects.values_list("pk", flat=True)),
        },
        follow=True,
    )
    text = response.content.decode()
    assert "2 messages cancelled. 2 skipped: they were being sent or already final." in text
    statuses = dict(Message.objects.values_list("subject", "status"))
    assert statuses == {
        "one": Message.Status.CANCELLED,
        "two": Message.Status.CANCELLED,
        "held": Message.Status.SENDING,
        "done": Message.Status.SENT,
    }
    by_message = {
        subject: sorted(
            Recipient.objects.filter(message__subject=subject).values_list("status", flat=True)
        )
        for subject in statuses
    }
    assert by_message["one"] == by_message["two"] == [Recipient.Status.CANCELLED] * 2
    assert by_message["held"] == [Recipient.Status.PENDING] * 2


def test_route_actions_count_in_words(admin_client, make_route, refused_port):
    routes = [make_route(port=refused_port, enabled=False) for _ in range(2)]
    response = admin_client.post(
        "/admin/django_smtprelay/route/",
        {"action": "enable_routes", "_selected_action": [r.pk for r in routes]},
        follow=True,
    )
    assert b"2 routes enabled." in response.content
    response = admin_client.post(
        "/admin/django_smtprelay/route/",
        {"action": "disable_routes", "_selected_action": [routes[0].pk]},
        follow=True,
    )
    assert b"1 route disabled." in response.content


def test_the_admin_calls_sending_domains_what_the_readme_calls_them(admin_client):
    index = admin_client.get("/admin/").content.decode()
    assert "Sending domains" in index
    assert "Sender domains" not in index
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "## Sending domains" in readme
