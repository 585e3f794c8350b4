"""Synchronous requests commit their event to ``Intake`` before the response, and the batch
step stores it as an ``Activity`` with its verdict (``tracking.pipeline.intake``). This
replaces ``Activity.judged`` (migration 0008): a row is only ever written with its verdict,
so the judge stage no longer rewrites every row of a synchronous request.

Rows 0008 stored without their verdict (``judged = false``) keep what they have: the column
existed only between two unreleased versions."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("tracking", "0008_activity_judged")]

    operations = [
        migrations.RemoveIndex(model_name="activity", name="trk_unjudged"),
        migrations.RemoveField(model_name="activity", name="judged"),
        migrations.CreateModel(
            name="Intake",
            fields=[
                ("id", models.UUIDField(primary_key=True, serialize=False)),
                ("created", models.DateTimeField()),
                ("payload", models.TextField()),
                ("owner", models.CharField(default="", max_length=100)),
            ],
            options={
                "verbose_name": "activity awaiting its verdict",
                "verbose_name_plural": "activities awaiting their verdict",
            },
        ),
    ]
