"""Every recipient carries its domain, lower case and IDNA-encoded, in an
indexed column: the admin's recipient-domain filter and its search by domain
or address read an index, not every address.

Internationalised domains are stored as the envelope carries them (the
``xn--`` form); the admin takes a domain typed either way.
"""

from datetime import timedelta

import pytest
from django.core.mail import EmailMessage, get_connection, send_mail
from django.db import connection, transaction
from django.utils import timezone

from django_smtprelay.admin.recipient_search import domain_label, recipient_condition
from django_smtprelay.models import Message, Recipient

pytestmark = pytest.mark.django_db

MESSAGES = "/admin/django_smtprelay/message/"
RECIPIENTS = "/admin/django_smtprelay/recipient/"
IDN = "xn--bcher-kva.example"  # bücher.example


def _domains() -> dict[str, str]:
    return dict(Recipient.objects.values_list("address", "domain"))


def test_one_message_stores_each_recipients_domain():
    # PostgreSQL: the one-statement CTE; SQLite: multi-row INSERT.
    send_mail("One", "Body", "from@example.com", ["Ann@MiXed.Example.COM", "bo@bücher.example"])
    assert _domains() == {"Ann@MiXed.Example.COM": "mixed.example.com", f"bo@{IDN}": IDN}


def test_many_messages_store_each_recipients_domain():
    # PostgreSQL: COPY; SQLite: multi-row INSERT.
    messages = [
        EmailMessage(f"Bulk {i}", "Body", "from@example.com", [f"u{i}@Shop{i % 2}.Example"])
        for i in range(6)
    ] + [EmailMessage("IDN", "Body", "from@example.com", ["Zoë <zoe@BÜCHER.example>"])]
    assert get_connection().send_messages(messages) == 7
    domains = _domains()
    assert domains.pop(f"zoe@{IDN}") == IDN
    assert domains == {f"u{i}@Shop{i % 2}.Example": f"shop{i % 2}.example" for i in range(6)}


def test_the_orm_sets_the_domain_on_save_and_bulk_create():
    message = Message.objects.create(from_email="a@example.com", expires_at=timezone.now())
    one = Recipient.objects.create(message=message, address="X@Upper.Example")
    many = Recipient.objects.bulk_create(
        [Recipient(message=message, address=a) for a in ("y@Bücher.Example", "z@b.example")]
    )
    assert one.domain == "upper.example"
    assert [r.domain for r in many] == [IDN, "b.example"]
    assert _domains() == {"X@Upper.Example": "upper.example", "y@Bücher.Example": IDN,
                          "z@b.example": "b.example"}  # fmt: skip


@pytest.fixture
def mixed_queue():
    send_mail("To mixed", "Body", "from@example.com", ["Ann@MiXed.Example.COM"])
    send_mail("To IDN", "Body", "from@example.com", ["bo@Bücher.example"])
    send_mail("To other", "Body", "from@example.com", ["cy@other.example"])


@pytest.mark.parametrize(
    ("params", "subjects"),
    [
        ({"domain": "mixed.example.com"}, {"To mixed"}),
        ({"domain": "MIXED.example.COM"}, {"To mixed"}),
        ({"domain": "bücher.example"}, {"To IDN"}),
        ({"domain": "BÜCHER.example"}, {"To IDN"}),
        ({"domain": IDN}, {"To IDN"}),
        ({"domain": "example.com"}, set()),  # a domain, not the end of one
        ({"q": "@Mixed.example.com"}, {"To mixed"}),
        ({"q": "@bücher.example"}, {"To IDN"}),
        ({"q": "ANN@mixed.example.com"}, {"To mixed"}),
        ({"q": f"BO@{IDN.upper()}"}, {"To IDN"}),
        ({"q": "bo@bücher.example"}, {"To IDN"}),
        ({"q": "nn@mixed.example.com"}, set()),  # a whole address, not a part of one
        ({"q": "To other"}, {"To other"}),  # anything else: the admin's own search
    ],
)
def test_message_list_by_recipient_domain_and_address(admin_client, mixed_queue, params, subjects):
    response = admin_client.get(MESSAGES, params)
    assert response.status_code == 200
    assert {m.subject for m in response.context["cl"].result_list} == subjects


@pytest.mark.parametrize(
    ("params", "addresses"),
    [
        ({"domain": "Mixed.Example.com"}, {"Ann@MiXed.Example.COM"}),
        ({"domain": "bücher.example"}, {f"bo@{IDN}"}),
        ({"q": "@BÜCHER.EXAMPLE"}, {f"bo@{IDN}"}),
        ({"q": "ann@MIXED.EXAMPLE.COM"}, {"Ann@MiXed.Example.COM"}),
        ({"q": "ann@"}, {"Ann@MiXed.Example.COM"}),  # part of an address: icontains
    ],
)
def test_recipient_list_by_domain_and_address(admin_client, mixed_queue, params, addresses):
    response = admin_client.get(RECIPIENTS, params)
    assert response.status_code == 200
    assert {r.address for r in response.context["cl"].result_list} == addresses


def test_the_filter_offers_stored_domains_with_the_unicode_form(admin_client, mixed_queue):
    page = admin_client.get(RECIPIENTS).content.decode()
    assert f"?domain={IDN}" in page and f"bücher.example ({IDN})" in page
    assert "?domain=mixed.example.com" in page
    assert domain_label("mixed.example.com") == "mixed.example.com"
    assert domain_label("xn--a.example") == "xn--a.example"  # not valid IDNA


def _plan(queryset) -> str:
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:  # tiny tables: make an index the only way in
                cursor.execute("SET LOCAL enable_seqscan = off")
        return queryset.explain()


@pytest.mark.parametrize(
    ("term", "index"),
    [
        ("@Example.com", "smtprelay_rcpt_domain"),
        ("Ann@Example.com", "smtprelay_rcpt_address_lower"),
    ],
)
def test_a_domain_or_address_search_reads_an_index(mixed_queue, term, index):
    plan = _plan(Recipient.objects.filter(recipient_condition(term)))
    assert index in plan, plan


@pytest.mark.parametrize("term", ["", "plain words", "ann@", "<id@host>", "a b@c"])
def test_other_terms_are_left_to_the_admins_search(term):
    assert recipient_condition(term) is None


@pytest.mark.django_db(transaction=True)
def test_the_migration_fills_the_domain_of_existing_recipients():
    from django.db.migrations.executor import MigrationExecutor

    app = "django_smtprelay"
    before, after = [(app, "0020_dkim_signing")], [(app, "0021_recipient_domain")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    message = old.get_model(app, "Message").objects.create(
        from_email="a@example.com", expires_at=timezone.now() + timedelta(days=1)
    )
    addresses = ["Ann@MiXed.Example.COM", f"bo@{IDN}", '"a@b"@Quoted.Example', "cy@Bücher.example"]
    old_recipient = old.get_model(app, "Recipient")
    old_recipient.objects.bulk_create(
        [old_recipient(message=message, address=a) for a in addresses]
    )
    try:
        executor = MigrationExecutor(connection)
        executor.migrate(after)
        new = executor.loader.project_state(after).apps
        rows = new.get_model(app, "Recipient").objects.values_list("address", "domain")
        assert dict(rows) == {
            "Ann@MiXed.Example.COM": "mixed.example.com",
            f"bo@{IDN}": IDN,
            '"a@b"@Quoted.Example': "quoted.example",
            "cy@Bücher.example": IDN,
        }
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes(app))
