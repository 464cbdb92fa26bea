"""Indexes on a message's lease and a recipient's route only where they are set.

Both are NULL when a message is queued, so queueing writes no entry in
either (two index pages fewer per ``send_mail()`` on SQLite, two index
inserts fewer on PostgreSQL); every lookup by a token or a route implies
the value is set, so the lookups use them as before.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("django_smtprelay", "0021_recipient_domain"),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="message",
            name="smtprelay_msg_lease",
        ),
        migrations.AlterField(
            model_name="recipient",
            name="route",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                to="django_smtprelay.route",
            ),
        ),
        migrations.AddIndex(
            model_name="message",
            index=models.Index(
                condition=models.Q(("lease_token__isnull", False)),
                fields=["lease_token"],
                name="smtprelay_msg_leased",
            ),
        ),
        migrations.AddIndex(
            model_name="recipient",
            index=models.Index(
                condition=models.Q(("route__isnull", False)),
                fields=["route"],
                name="smtprelay_rcpt_route",
            ),
        ),
    ]
