"""Message actions say what they did and why not: retry now, send again, cancel."""

import pytest
from django.core.mail import send_mail, send_mass_mail
from django.db import connection
from django.test.utils import CaptureQueriesContext

from django_smtprelay.delivery import DeliveryEngine
from django_smtprelay.models import DeliveryAttempt, Message, MessageContent, Recipient

LIST = "/admin/django_smtprelay/message/"


def act(client, action, ids, **extra):
    data = {"action": action, "_selected_action": list(ids), **extra}
    return client.post(LIST, data, follow=True)


def shown_messages(response):
    return [str(m) for m in response.context["messages"]]


@pytest.mark.django_db(transaction=True)
def test_retry_now_publishes_delivery_at_once_and_says_what_it_skipped(
    celery_worker, admin_client, smtp_server, make_route
):
    from datetime import timedelta

    from django.utils import timezone

    server = smtp_server()
    make_route(server)
    for subject in ("waiting", "done", "gave up", "busy"):
        send_mail(subject, "Body", "from@example.com", ["to@example.com"])
    later = timezone.now() + timedelta(hours=1)
    Message.objects.filter(subject="waiting").update(status="deferred", next_attempt_at=later)
    Message.objects.filter(subject="done").update(status="sent")
    Message.objects.filter(subject="gave up").update(status="failed")
    Message.objects.filter(subject="busy").update(
        status="sending", lease_expires_at=later, next_attempt_at=later
    )
    response = act(admin_client, "retry_now", Message.objects.values_list("pk", flat=True))
    assert shown_messages(response) == [
        '1 message is being sent now. 3 skipped: 1 failed (use "send again"), '
        "1 being sent, 1 already sent."
    ]
    # No sweep runs here: only the published task can deliver it.
    received = server.wait_for(1, timeout=20)
    assert received[0].rcpt_tos == ("to@example.com",)


@pytest.mark.django_db
def test_retry_now_on_a_failed_message_says_why_nothing_happened(admin_client):
    send_mail("gave up", "Body", "from@example.com", ["to@example.com"])
    Message.objects.update(status="failed")
    response = act(admin_client, "retry_now", Message.objects.values_list("pk", flat=True))
    assert shown_messages(response) == [
        '0 messages are being sent now. 1 skipped: 1 failed (use "send again").'
    ]


@pytest.fixture
def failed_message(smtp_server, make_route):
    """Delivered to one recipient, refused for good for the other, through "first"."""
    # A policy refusal, not "no such user": the address is not suppressed.
    server = smtp_server(rcpt_replies={"gone@example.com": "554 5.7.1 Rejected by policy"})
    make_route(server, name="first")
    send_mail("Twice", "Body", "from@example.com", ["ok@example.com", "gone@example.com"])
    DeliveryEngine().run()
    return server


@pytest.mark.django_db
def test_send_again_to_the_failed_recipients_through_a_chosen_route(
    admin_client, failed_message, smtp_server, make_route
):
    other = smtp_server()
    second = make_route(other, name="second", tags="manual")
    message = Message.objects.get()
    assert message.status == Message.Status.SENT  # one recipient failed among good ones
    page = act(admin_client, "send_again_failed", [message.pk])
    assert page.templates[0].name == "admin/django_smtprelay/message/send_again.html"
    assert b"second" in page.content and Message.objects.get().status == "sent"  # not yet
    response = act(admin_client, "send_again_failed", [message.pk], confirm="yes", route=second.pk)
    assert shown_messages(response) == ["1 message queued to be sent again through second."]
    message.refresh_from_db()
    assert (message.status, message.route_hint, message.attempt_count) == ("queued", "second", 0)
    states = dict(Recipient.objects.values_list("address", "status"))
    assert states == {"ok@example.com": "delivered", "gone@example.com": "pending"}
    DeliveryEngine().run()
    assert [m.rcpt_tos for m in other.messages] == [("gone@example.com",)]
    assert Message.objects.get().status == "sent"
    assert DeliveryAttempt.objects.filter(route_name="first").count() == 1  # history kept


@pytest.mark.django_db
def test_send_again_to_all_requeues_a_cancelled_message_and_skips_others(
    admin_client, failed_message
):
    send_mail("Stopped", "Body", "from@example.com", ["a@example.com", "b@example.com"])
    stopped = Message.objects.get(subject="Stopped")
    Message.objects.filter(pk=stopped.pk).cancel()
    twice = Message.objects.get(subject="Twice")
    response = act(admin_client, "send_again_all", [stopped.pk, twice.pk], confirm="yes", route="")
    assert shown_messages(response) == [
        "1 message queued to be sent again. 1 skipped: 1 already sent."
    ]
    assert Message.objects.get(pk=stopped.pk).status == "queued"
    assert set(Recipient.objects.filter(message=stopped).values_list("status", flat=True)) == {
        "pending"
    }
    DeliveryEngine().run()
    assert Message.objects.get(pk=stopped.pk).status == "sent"
    assert ("a@example.com", "b@example.com") in [m.rcpt_tos for m in failed_message.messages]


@pytest.mark.django_db
def test_send_again_to_the_failed_skips_a_message_with_none_failed(admin_client):
    send_mail("Stopped", "Body", "from@example.com", ["a@example.com"])
    Message.objects.update(status="failed")  # its recipient still pending: nothing to resend
    response = act(
        admin_client,
        "send_again_failed",
        Message.objects.values_list("pk", flat=True),
        confirm="yes",
    )
    assert shown_messages(response) == [
        "0 messages queued to be sent again. 1 skipped: 1 with no failed or cancelled recipient."
    ]


@pytest.mark.django_db
def test_send_again_skips_a_message_whose_content_retention_deleted(admin_client):
    send_mail("Old", "Body", "from@example.com", ["a@example.com"])
    message = Message.objects.get()
    Message.objects.filter(pk=message.pk).cancel()
    MessageContent.objects.filter(message=message).delete()  # what smtprelay_purge does
    response = act(admin_client, "send_again_all", [message.pk], confirm="yes", route="")
    assert shown_messages(response) == [
        "0 messages queued to be sent again. 1 skipped: 1 whose content was deleted by "
        "retention (RETENTION_DAYS)."
    ]
    assert Message.objects.get().status == "cancelled"


@pytest.mark.django_db
def test_cancel_of_2000_messages_takes_a_handful_of_queries(admin_client):
    send_mass_mail([(f"m{i}", "Body", "from@example.com", ["to@example.com"]) for i in range(2000)])
    assert Message.objects.count() == 2000
    first = Message.objects.values_list("pk", flat=True)[0]
    data = {"action": "cancel", "_selected_action": [first], "select_across": "1", "index": "0"}
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.post(LIST, data)
    # session, user, the changelist's filter choices (the submission accounts
    # among them) and count (on PostgreSQL the table's estimate first), the
    # selection's count, the ids, one UPDATE each of messages and recipients,
    # savepoints; not one per message
    assert response.status_code == 302
    assert len(queries) <= 17, [q["sql"][:80] for q in queries]
    assert shown_messages(admin_client.get(LIST)) == ["2000 messages cancelled."]
    assert Recipient.objects.exclude(status="cancelled").count() == 0
