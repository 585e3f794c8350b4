"""``Activity.judged``: False between a synchronous request's commit and its verdict.

Existing rows were judged when written (``db_default`` True, also for rows inserted by SQL
that does not name the column). The partial index holds only the few pending rows. Plain
operations: on PostgreSQL's partitioned table (migration 0002) ``ADD COLUMN`` and
``CREATE INDEX`` on the parent apply to every partition.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("tracking", "0007_detection_round2")]

    operations = [
        migrations.AddField(
            model_name="activity",
            name="judged",
            field=models.BooleanField(db_default=True, default=True),
        ),
        migrations.AddIndex(
            model_name="activity",
            index=models.Index(
                condition=models.Q(("judged", False)), fields=["timestamp"], name="trk_unjudged"
            ),
        ),
    ]
