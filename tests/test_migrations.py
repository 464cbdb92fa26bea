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
