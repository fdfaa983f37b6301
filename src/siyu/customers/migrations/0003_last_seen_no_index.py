"""Person.last_seen loses its index: nearly every ingested message moves it, so the index cost
a random page write per person seen, and nothing looks persons up by it."""

from django.db import migrations, models

from siyu.db import drop_field_index


class Migration(migrations.Migration):

    dependencies = [
        ("customers", "0002_touch_times"),
    ]

    operations = [
        drop_field_index("person", "last_seen", models.DateTimeField(blank=True, null=True),
                         index="customers_person_last_seen_4fcb4e65", table="customers_person", column="last_seen"),
    ]
