"""Detection, round 2: the activity's network kind (anonymizing or hosting exit) and the
organisation networks learned from logins or taught in review."""

import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("tracking", "0006_alerts_forwarding"),
    ]

    operations = [
        migrations.AddField(
            model_name="activity",
            name="network_kind",
            field=models.CharField(
                blank=True,
                choices=[
                    ("vpn", "VPN exit"),
                    ("hosting", "hosting provider"),
                    ("public_proxy", "public proxy"),
                    ("residential_proxy", "residential proxy"),
                    ("tor", "Tor exit node"),
                ],
                db_index=True,
                default="",
                max_length=20,
            ),
        ),
        migrations.CreateModel(
            name="OrganisationNetwork",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("network", models.CharField(max_length=64)),
                ("name", models.CharField(blank=True, default="", max_length=255)),
                (
                    "source",
                    models.CharField(
                        choices=[("learned", "learned"), ("review", "taught in review")],
                        max_length=16,
                    ),
                ),
                ("users", models.JSONField(blank=True, default=list)),
                ("learned_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("created_by", models.CharField(blank=True, default="", max_length=150)),
                ("revoked_at", models.DateTimeField(blank=True, null=True)),
                ("revoked_by", models.CharField(blank=True, default="", max_length=150)),
            ],
            options={
                "ordering": ["-learned_at"],
                "constraints": [
                    models.UniqueConstraint(
                        condition=models.Q(("revoked_at__isnull", True)),
                        fields=("network",),
                        name="trk_orgnet_active_network",
                    )
                ],
            },
        ),
    ]
