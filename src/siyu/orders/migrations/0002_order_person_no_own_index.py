"""Order.person loses its own index: the (person, placed_at) index already serves every lookup
by person, and the second one cost one more B-tree write (at a random place) for each order."""

import django.db.models.deletion
from django.db import migrations, models

from siyu.db import drop_field_index


class Migration(migrations.Migration):

    dependencies = [
        ("orders", "0001_initial"),
    ]

    operations = [
        drop_field_index("order", "person",
                         models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT,
                                           related_name="orders", to="customers.person"),
                         index="orders_order_person_id_d83c6a37", table="orders_order", column="person_id"),
    ]
