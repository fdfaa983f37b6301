"""Person.last_seen loses its index: nearly every ingested message moves it, so the index cost
a random page write per person seen, and nothing looks persons up by it.

A plain DROP INDEX (the name Django gave it on both databases) rather than the table rebuild
that altering the field would cause on SQLite."""

from django.db import migrations, models

INDEX = "customers_person_last_seen_4fcb4e65"


class Migration(migrations.Migration):

    dependencies = [
        ("customers", "0002_touch_times"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    f"DROP INDEX IF EXISTS {INDEX}",
                    reverse_sql=f"CREATE INDEX {INDEX} ON customers_person (last_seen)",
                ),
            ],
            state_operations=[
                migrations.AlterField(
                    model_name="person",
                    name="last_seen",
                    field=models.DateTimeField(blank=True, null=True),
                ),
            ],
        ),
    ]
