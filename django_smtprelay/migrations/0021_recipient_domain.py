"""Recipients get a stored domain (lower case, IDNA-encoded), filled for the
rows already queued in batches, then indexed; a lower-case address index
replaces the plain one (the admin's search by address ignores case).

Not atomic: on a large queue each batch commits on its own, so the table is
never locked for the whole fill and an interrupted run resumes where it
stopped (rows whose domain is still empty).
"""

from django.db import migrations, models, transaction
from django.db.models.functions import Lower, StrIndex, Substr

import django_smtprelay.models.fields

BATCH = 20_000


def fill_domains(apps, schema_editor):
    from django_smtprelay.envelope import address_domain

    Recipient = apps.get_model("django_smtprelay", "Recipient")
    rows = Recipient.objects.using(schema_editor.connection.alias)
    bounds = rows.filter(domain="").aggregate(low=models.Min("pk"), high=models.Max("pk"))
    if bounds["low"] is None:
        return
    # The backend stores every address with an IDNA-encoded domain, so the
    # database can lower-case what follows the "@" itself.
    after_at = Lower(Substr("address", StrIndex("address", models.Value("@")) + 1))
    for start in range(bounds["low"], bounds["high"] + 1, BATCH):
        with transaction.atomic(using=schema_editor.connection.alias):
            rows.filter(pk__gte=start, pk__lt=start + BATCH, domain="").update(domain=after_at)
    # What the database cannot do alike: a quoted local part with an "@"
    # ("a@b"@example.com), or a domain still in Unicode (rows written by hand).
    odd = rows.filter(models.Q(address__regex=r"@.*@") | ~models.Q(address__regex=r"^[ -~]*$"))
    for pk, address in odd.values_list("pk", "address").iterator():
        rows.filter(pk=pk).update(domain=address_domain(address))


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("django_smtprelay", "0020_dkim_signing"),
    ]

    operations = [
        migrations.AddField(
            model_name="recipient",
            name="domain",
            field=django_smtprelay.models.fields.AddressDomainField(
                blank=True, editable=False, max_length=253, verbose_name="domain"
            ),
        ),
        migrations.RunPython(fill_domains, migrations.RunPython.noop, elidable=True),
        migrations.RemoveIndex(model_name="recipient", name="smtprelay_rcpt_address"),
        migrations.AddIndex(
            model_name="recipient",
            index=models.Index(Lower("address"), name="smtprelay_rcpt_address_lower"),
        ),
        migrations.AddIndex(
            model_name="recipient",
            index=models.Index(fields=["domain", "message"], name="smtprelay_rcpt_domain"),
        ),
    ]
