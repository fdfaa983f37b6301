"""Identity.person loses its own index: the (person, kind) index already serves every lookup by
person, and the second one cost one more B-tree write for each new identity.

A plain DROP INDEX (the name Django gave it on both databases) rather than the table rebuild
that altering the field would cause on SQLite."""

import django.db.models.deletion
from django.db import migrations, models

INDEX = "customers_identity_person_id_f7c80685"


class Migration(migrations.Migration):

    dependencies = [
        ("customers", "0003_last_seen_no_index"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    f"DROP INDEX IF EXISTS {INDEX}",
                    reverse_sql=f"CREATE INDEX {INDEX} ON customers_identity (person_id)",
                ),
            ],
            state_operations=[
                migrations.AlterField(
                    model_name="identity",
                    name="person",
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE,
                                            related_name="identities", to="customers.person"),
                ),
            ],
        ),
    ]
