"""Order.person loses its own index: the (person, placed_at) index already serves every lookup
by person, and the second one cost one more B-tree write (at a random place) for each order.

A plain DROP INDEX (the name Django gave it on both databases) rather than the table rebuild
that altering the field would cause on SQLite."""

import django.db.models.deletion
from django.db import migrations, models

INDEX = "orders_order_person_id_d83c6a37"


class Migration(migrations.Migration):

    dependencies = [
        ("orders", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    f"DROP INDEX IF EXISTS {INDEX}",
                    reverse_sql=f"CREATE INDEX {INDEX} ON orders_order (person_id)",
                ),
            ],
            state_operations=[
                migrations.AlterField(
                    model_name="order",
                    name="person",
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT,
                                            related_name="orders", to="customers.person"),
                ),
            ],
        ),
    ]
