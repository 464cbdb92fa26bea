"""Fewer writes per queued message: no LIKE indexes, no foreign-key checks,
no index entry for a message without a submission account.

- ``Message.message_id`` and ``Message.sender_domain`` keep one index each,
  now named in ``Meta``. With ``db_index=True``, PostgreSQL had a second one
  per field (``varchar_pattern_ops``, for ``LIKE 'prefix%'``) that no query
  uses; every ``send_mail()`` wrote both.
- ``MessageContent.message`` and ``Recipient.message`` have no foreign-key
  constraint in the database: both rows are written only with their message,
  and deletes cascade through Django. The constraint's check, at every commit,
  read and locked the message row just written.
- ``Message.submission_account`` is indexed only where set (as 0022 did for
  a recipient's route): a message the site queues has none.

The database side is done in place, without rebuilding a table: the existing
index is renamed (on SQLite, which cannot rename one, dropped and created),
the LIKE index dropped, the account's index replaced by a partial one.
SQLite keeps its foreign-key constraints: dropping
one there rebuilds the whole table (every message's bytes), and its check is
a lookup by rowid.
"""

import django.db.models.deletion
from django.db import migrations, models

INDEXES = (
    ("message_id", "smtprelay_msg_message_id"),
    ("sender_domain", "smtprelay_msg_sender_domain"),
)
CHILDREN = (("messagecontent", "message"), ("recipient", "message"))
ACCOUNT = models.Index(
    fields=["submission_account"],
    name="smtprelay_msg_account",
    condition=models.Q(submission_account__isnull=False),
)


def _single_column_indexes(schema_editor, table: str, column: str) -> list[str]:
    with schema_editor.connection.cursor() as cursor:
        constraints = schema_editor.connection.introspection.get_constraints(cursor, table)
    return sorted(
        name
        for name, info in constraints.items()
        if info["index"]
        and not info["unique"]
        and not info["primary_key"]
        and info["columns"] == [column]
    )


def _drops_foreign_keys(schema_editor) -> bool:
    return schema_editor.connection.vendor != "sqlite"


def forwards(apps, schema_editor):
    message = apps.get_model("django_smtprelay", "Message")
    table = message._meta.db_table
    for column, new_name in INDEXES:
        new = models.Index(fields=[column], name=new_name)
        found = _single_column_indexes(schema_editor, table, column)
        if new_name in found:
            continue
        for name in found:
            if name.endswith("_like"):  # PostgreSQL's varchar_pattern_ops index
                schema_editor.execute(schema_editor._delete_index_sql(message, name))
        plain = [name for name in found if not name.endswith("_like")]
        if plain:
            schema_editor.rename_index(message, models.Index(fields=[column], name=plain[0]), new)
        else:
            schema_editor.add_index(message, new)
    account = message._meta.get_field("submission_account").column
    found = _single_column_indexes(schema_editor, table, account)
    # Where partial indexes exist (SQLite, PostgreSQL); elsewhere the full
    # one stays (MySQL needs one under a foreign key).
    if ACCOUNT.name not in found and schema_editor.connection.features.supports_partial_indexes:
        for name in found:
            schema_editor.execute(schema_editor._delete_index_sql(message, name))
        schema_editor.add_index(message, ACCOUNT)
    if not _drops_foreign_keys(schema_editor):
        return
    for model_name, field_name in CHILDREN:
        model = apps.get_model("django_smtprelay", model_name)
        column = model._meta.get_field(field_name).column
        for name in schema_editor._constraint_names(model, [column], foreign_key=True):
            schema_editor.execute(schema_editor._delete_fk_sql(model, name))


def backwards(apps, schema_editor):
    # apps: the state before this migration (db_index=True, constraints on).
    message = apps.get_model("django_smtprelay", "Message")
    for column, new_name in INDEXES:
        field = message._meta.get_field(column)
        old_name = schema_editor._create_index_name(message._meta.db_table, [field.column])
        schema_editor.rename_index(
            message,
            models.Index(fields=[column], name=new_name),
            models.Index(fields=[column], name=old_name),
        )
        like = getattr(schema_editor, "_create_like_index_sql", None)
        if like is not None:  # PostgreSQL
            sql = like(message, field)
            if sql is not None:
                schema_editor.execute(sql)
    if schema_editor.connection.features.supports_partial_indexes:
        schema_editor.remove_index(message, ACCOUNT)
        account = message._meta.get_field("submission_account")
        schema_editor.execute(schema_editor._create_index_sql(message, fields=[account]))
    if not _drops_foreign_keys(schema_editor):
        return
    for model_name, field_name in CHILDREN:
        model = apps.get_model("django_smtprelay", model_name)
        field = model._meta.get_field(field_name)
        schema_editor.execute(
            schema_editor._create_fk_sql(model, field, "_fk_%(to_table)s_%(to_column)s")
        )


class Migration(migrations.Migration):
    dependencies = [
        ("django_smtprelay", "0022_partial_null_indexes"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(forwards, backwards)],
            state_operations=[
                migrations.AlterField(
                    model_name="message",
                    name="message_id",
                    field=models.CharField(blank=True, max_length=255),
                ),
                migrations.AlterField(
                    model_name="message",
                    name="sender_domain",
                    field=models.CharField(blank=True, max_length=253),
                ),
                migrations.AlterField(
                    model_name="messagecontent",
                    name="message",
                    field=models.OneToOneField(
                        db_constraint=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="content",
                        serialize=False,
                        to="django_smtprelay.message",
                    ),
                ),
                migrations.AlterField(
                    model_name="recipient",
                    name="message",
                    field=models.ForeignKey(
                        db_constraint=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="recipients",
                        to="django_smtprelay.message",
                    ),
                ),
                migrations.AddIndex(
                    model_name="message",
                    index=models.Index(fields=["message_id"], name="smtprelay_msg_message_id"),
                ),
                migrations.AddIndex(
                    model_name="message",
                    index=models.Index(
                        fields=["sender_domain"], name="smtprelay_msg_sender_domain"
                    ),
                ),
                migrations.AlterField(
                    model_name="message",
                    name="submission_account",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        editable=False,
                        help_text="The SMTP submission account it came in with; "
                        "empty: queued by the site.",
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="messages",
                        to="django_smtprelay.submissionaccount",
                    ),
                ),
                migrations.AddIndex(model_name="message", index=ACCOUNT),
            ],
        ),
    ]
