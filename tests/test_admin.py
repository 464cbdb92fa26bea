"""The control room renders and its actions do what they say."""

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
    assert b"1 message will be retried." in response.content
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
