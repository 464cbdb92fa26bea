from io import StringIO

import pytest
from django.core.management import call_command


@pytest.mark.django_db
def test_models_and_migrations_do_not_drift():
    out = StringIO()
    try:
        call_command("makemigrations", "django_smtprelay", "--check", "--dry-run", stdout=out)
    except SystemExit:  # --check exits non-zero when a migration is missing
        pytest.fail(f"Models changed without a migration:\n{out.getvalue()}")


@pytest.mark.django_db(transaction=True)
def test_queued_bytes_move_to_message_content_and_back():
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor
    from django.utils import timezone

    app = "django_smtprelay"
    before, after = [(app, "0001_initial")], [(app, "0002_message_content")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    now = timezone.now()
    raws = [b"Subject: one\r\n\r\nfirst\r\n", b"Subject: two\r\n\r\n\xc3\xa9\r\n"]
    pks = [
        old.get_model(app, "Message")
        .objects.create(raw=raw, from_email="a@example.com", expires_at=now, size=len(raw))
        .pk
        for raw in raws
    ]
    try:
        executor = MigrationExecutor(connection)
        executor.migrate(after)
        new = executor.loader.project_state(after).apps
        content = new.get_model(app, "MessageContent").objects.order_by("message_id")
        assert [(c.message_id, bytes(c.raw)) for c in content] == list(zip(pks, raws, strict=True))

        executor = MigrationExecutor(connection)
        executor.migrate(before)
        messages = old.get_model(app, "Message").objects.order_by("pk")
        assert [bytes(m.raw) for m in messages] == raws
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes(app))


@pytest.mark.django_db
def test_queueing_writes_no_like_index_and_checks_no_foreign_key():
    """0023: the message's message_id and sender_domain have one index each, its
    submission account a partial one, and its content and recipients no
    foreign-key constraint (but on SQLite, where dropping one rebuilds the table)."""
    from django.db import connection

    from django_smtprelay.models import Message, MessageContent, Recipient

    with connection.cursor() as cursor:
        indexes = connection.introspection.get_constraints(cursor, Message._meta.db_table)
        children = {
            model: connection.introspection.get_constraints(cursor, model._meta.db_table)
            for model in (MessageContent, Recipient)
        }
    for column, name in (
        ("message_id", "smtprelay_msg_message_id"),
        ("sender_domain", "smtprelay_msg_sender_domain"),
        ("submission_account_id", "smtprelay_msg_account"),  # partial: where set
    ):
        on_column = sorted(
            n
            for n, info in indexes.items()
            if info["index"] and not info["primary_key"] and info["columns"] == [column]
        )
        assert on_column == [name]
    if connection.vendor == "sqlite":
        return
    for model, constraints in children.items():
        assert not [
            n
            for n, info in constraints.items()
            if info["foreign_key"] and info["foreign_key"][0] == Message._meta.db_table
        ], model
