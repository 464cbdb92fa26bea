from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("django_smtprelay", "0008_hourly_delivery_statistics"),
    ]

    operations = [
        migrations.AddField(
            model_name="message",
            name="deliver_by",
            field=models.DateTimeField(
                blank=True,
                help_text="Never sent after this time (the sender's expiry): it fails as expired instead.",
                null=True,
            ),
        ),
    ]
