"""Daily rollups (statistics over long windows) and a partial index for "top flagged users".

Works on SQLite and PostgreSQL, and on PostgreSQL's partitioned ``tracking_activity``
(migration 0002): a plain ``CREATE INDEX`` on a partitioned table creates the index on every
partition and on partitions created later (``CONCURRENTLY`` would not be allowed there).
``DailyRollup`` is filled from the existing hourly rows, so statistics stay exact across the
upgrade without rescanning the activity table.
"""

from datetime import timezone as dt_timezone

from django.db import migrations, models
from django.db.models import Max, Min, Sum
from django.db.models.functions import TruncDay

UTC = dt_timezone.utc


def fill_daily(apps, schema_editor):
    Rollup = apps.get_model("tracking", "Rollup")
    DailyRollup = apps.get_model("tracking", "DailyRollup")
    db = schema_editor.connection.alias
    rows = (
        Rollup.objects.using(db)
        .order_by()
        .annotate(d=TruncDay("bucket", tzinfo=UTC))
        .values("d", "type", "country")
        .annotate(
            n=Sum("count"),
            nf=Sum("flagged"),
            dsum=Sum("duration_sum"),
            dcount=Sum("duration_count"),
            dmin=Min("duration_min"),
            dmax=Max("duration_max"),
        )
    )
    DailyRollup.objects.using(db).bulk_create(
        (
            DailyRollup(
                bucket=r["d"],
                type=r["type"],
                country=r["country"],
                count=r["n"],
                flagged=r["nf"],
                duration_sum=r["dsum"],
                duration_count=r["dcount"],
                duration_min=r["dmin"],
                duration_max=r["dmax"],
            )
            for r in rows
        ),
        batch_size=1000,
    )


class Migration(migrations.Migration):
    dependencies = [
        ("tracking", "0002_postgres_partitioning"),
    ]

    operations = [
        migrations.CreateModel(
            name="DailyRollup",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("bucket", models.DateTimeField()),
                ("type", models.CharField(max_length=32)),
                ("country", models.CharField(blank=True, default="", max_length=2)),
                ("count", models.BigIntegerField(default=0)),
                ("flagged", models.BigIntegerField(default=0)),
                ("duration_sum", models.FloatField(default=0.0)),
                ("duration_count", models.BigIntegerField(default=0)),
                ("duration_min", models.FloatField(blank=True, null=True)),
                ("duration_max", models.FloatField(blank=True, null=True)),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        fields=("bucket", "type", "country"), name="trk_daily_rollup_dims"
                    )
                ],
            },
        ),
        migrations.AddIndex(
            model_name="activity",
            index=models.Index(
                condition=models.Q(("flagged", True)),
                fields=["username"],
                name="trk_flagged_username",
            ),
        ),
        migrations.RunPython(fill_daily, migrations.RunPython.noop, elidable=True),
    ]
