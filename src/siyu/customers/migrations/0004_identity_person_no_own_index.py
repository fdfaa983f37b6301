"""Identity.person loses its own index: the (person, kind) index already serves every lookup by
person, and the second one cost one more B-tree write for each new identity."""

import django.db.models.deletion
from django.db import migrations, models

from siyu.db import drop_field_index


class Migration(migrations.Migration):

    dependencies = [
        ("customers", "0003_last_seen_no_index"),
    ]

    operations = [
        drop_field_index("identity", "person",
                         models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE,
                                           related_name="identities", to="customers.person"),
                         index="customers_identity_person_id_f7c80685", table="customers_identity",
                         column="person_id"),
    ]
