"""The built-in segments: RFM classes, lifecycle stages and value tiers."""

from django.db import migrations


def create_builtin(apps, schema_editor):
    from siyu.segments.queries import BUILTIN, builtin_rule, label

    Segment = apps.get_model("segments", "Segment")
    have = set(Segment.objects.exclude(key="").values_list("key", flat=True))
    for kind, value, attribute in BUILTIN:
        key = f"{kind}:{value}"
        if key not in have:
            Segment.objects.create(key=key, name=label(kind, value), created_by="siyu",
                                   rule=builtin_rule(attribute, value))


class Migration(migrations.Migration):
    dependencies = [("segments", "0001_initial")]
    operations = [migrations.RunPython(create_builtin, migrations.RunPython.noop)]
