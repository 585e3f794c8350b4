from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("tracking", "0003_dailyrollup_flagged_username")]

    operations = [
        migrations.AddField(
            model_name="activity",
            name="outcome",
            field=models.CharField(blank=True, db_index=True, default="", max_length=16),
        ),
    ]
