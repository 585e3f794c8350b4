"""``Activity.judged``: False between a synchronous request's commit and its verdict.

Existing rows were judged when written (default True). On PostgreSQL the column also keeps
``DEFAULT true`` in the database, for rows inserted by SQL that does not name it (Django's
``db_default`` would say this, but it needs Django 5.0; the package supports 4.2). The partial
index holds only the few pending rows. Plain operations: on PostgreSQL's partitioned table
(migration 0002) ``ADD COLUMN`` and ``CREATE INDEX`` on the parent apply to every partition.
"""

from django.db import migrations, models


def database_default(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        table = schema_editor.quote_name(apps.get_model("tracking", "Activity")._meta.db_table)
        schema_editor.execute(f"ALTER TABLE {table} ALTER COLUMN judged SET DEFAULT true")


class Migration(migrations.Migration):
    dependencies = [("tracking", "0007_detection_round2")]

    operations = [
        migrations.AddField(
            model_name="activity",
            name="judged",
            field=models.BooleanField(default=True),
        ),
        migrations.RunPython(database_default, migrations.RunPython.noop, elidable=True),
        migrations.AddIndex(
            model_name="activity",
            index=models.Index(
                condition=models.Q(("judged", False)), fields=["timestamp"], name="trk_unjudged"
            ),
        ),
    ]
