"""PostgreSQL only: partition ``tracking_activity`` by month on ``timestamp``.

Pure data-definition work in SQL (``RunPython``): the model state Django sees is unchanged, so
``makemigrations --check`` stays clean, and on SQLite (or with ``TRACKING_PARTITIONING =
False``) this migration does nothing. An existing, non-empty table is converted inside the
migration's transaction: every row is copied into the monthly partitions, counted, and the old
table dropped only when the counts match. See ``tracking.storage.partitioning``.
"""

from django.db import migrations


def forwards(apps, schema_editor):
    from tracking.storage.partitioning import partition_table

    partition_table(schema_editor.connection)


def backwards(apps, schema_editor):
    from tracking.storage.partitioning import unpartition_table

    unpartition_table(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [
        ("tracking", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(forwards, backwards, elidable=False),
    ]
