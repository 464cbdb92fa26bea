from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("django_smtprelay", "0006_message_possible_duplicate"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="message",
            options={
                "ordering": ("-created_at", "-pk"),
                "permissions": [
                    (
                        "view_message_body",
                        "Can view message bodies (preview and .eml download)",
                    )
                ],
            },
        ),
    ]
