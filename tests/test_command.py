from io import StringIO

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
