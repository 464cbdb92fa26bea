from io import StringIO
from types import SimpleNamespace

import pytest
from django.core.mail import send_mail
from django.core.management import call_command

from django_smtprelay.models import Message

pytestmark = pytest.mark.django_db


def test_smtprelay_send_delivers_everything_due_then_exits(smtp_server, make_route):
    server = smtp_server()
    make_route(server)
    for i in range(3):
        send_mail(f"m{i}", "Body", "from@example.com", [f"to{i}@example.com"])
    out = StringIO()
    call_command("smtprelay_send", "--batch-size", "2", stdout=out)
    assert "sent 3" in out.getvalue()
    assert len(server.messages) == 3
    assert set(Message.objects.values_list("status", flat=True)) == {"sent"}


def test_smtprelay_send_refuses_a_bad_batch_size():
    err = StringIO()
    with pytest.raises(SystemExit):
        call_command("smtprelay_send", "--batch-size", "0", stderr=err)
    assert "--batch-size" in err.getvalue() and "0" in err.getvalue()


def test_smtprelay_send_loop_polls_at_its_interval_and_stops_on_ctrl_c(
    smtp_server, make_route, monkeypatch
):
    from django_smtprelay.management.commands import smtprelay_send

    server = smtp_server()
    make_route(server)
    sleeps = []

    def sleep(seconds):
        # The clock is the command's only wait: new mail arrives during the
        # first one, Ctrl-C during the third.
        sleeps.append(seconds)
        if len(sleeps) == 1:
            send_mail("later", "Body", "from@example.com", ["to@example.com"])
        if len(sleeps) == 3:
            raise KeyboardInterrupt

    # Only the command's clock: the relay's threads keep the real one.
    monkeypatch.setattr(smtprelay_send, "time", SimpleNamespace(sleep=sleep))
    out = StringIO()
    call_command("smtprelay_send", "--loop", "--interval", "0.25", stdout=out)
    assert sleeps == [0.25, 0.25, 0.25]
    # A poll that found nothing prints nothing; the one that delivered says so.
    assert out.getvalue().splitlines() == [
        "claimed 1, sent 1, deferred 0, failed 0, attempts 1, sessions 1"
    ]
    assert len(server.messages) == 1


def test_smtprelay_send_without_loop_reports_even_an_empty_queue():
    out = StringIO()
    call_command("smtprelay_send", stdout=out)
    assert out.getvalue().strip() == (
        "claimed 0, sent 0, deferred 0, failed 0, attempts 0, sessions 0"
    )
