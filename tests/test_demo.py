"""`tracking demo` and the example's `demo_setup`: realistic traffic through the recording path."""

from __future__ import annotations

import io
import os
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from tracking.cli import demo
from tracking.models import Activity, Finding
from tracking.simulator import traffic

UTC = dt_timezone.utc

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.django_db(transaction=True)


def test_demo_fill_stores_traffic_and_flags_attacks():
    out = io.StringIO()
    before = datetime.now(UTC)
    call_command(
        "tracking", "demo", "--users", "15", "--days", "2", "--seed", "3", "--quiet", stdout=out
    )
    total = Activity.objects.count()
    assert "activities stored" in out.getvalue()
    assert 300 < total < 3000
    # Ends now: everything the simulation holds up to the call is stored, nothing later.
    # Compared with the simulation itself, not with a fixed lag: when the command runs in
    # the simulated people's night, the newest activity is honestly hours old.
    newest = Activity.objects.order_by("-timestamp").first().timestamp
    oldest = Activity.objects.order_by("timestamp").first().timestamp
    now = datetime.now(UTC)
    simulated = traffic.simulate(users=15, days=2, start=before - timedelta(days=2), seed=3)
    due = max(
        ts
        for ts in (datetime.fromisoformat(r["timestamp"]) for r in simulated)
        if ts < before
    )
    assert due <= newest <= now
    assert now - oldest > timedelta(hours=36)
    # enriched like live traffic, secrets redacted, sessions hashed
    assert (
        Activity.objects.exclude(city="").exists() and Activity.objects.exclude(asn=None).exists()
    )
    login = Activity.objects.filter(endpoint="/accounts/login/", status=200).first()
    assert "hunter2" not in str(login.params) and len(login.session_id) == 64
    # the simulated accounts exist and activities link to them
    users = traffic.population(15, 2, 3)
    assert get_user_model().objects.filter(username__in=[u.username for u in users]).count() == 15
    assert Activity.objects.filter(user__isnull=False).count() > total * 0.8
    # attacks are in and detection flagged some of them
    assert Activity.objects.filter(flagged=True).exists()
    assert Finding.objects.exists()
    assert Activity.objects.filter(type="AUTH", status=401).count() > 30  # stuffing/spraying


def test_demo_rerun_adds_nothing_then_tops_up():
    end = datetime.now(UTC)
    first = demo.fill(users=6, days=1, seed=0, end=end)
    count = Activity.objects.count()
    assert first["stored"] == count > 0
    again = demo.fill(users=6, days=1, seed=0, end=end + timedelta(minutes=1))
    assert again["skipped"] == 1 and Activity.objects.count() == count
    later = demo.fill(users=6, days=1, seed=0, end=end + timedelta(hours=12))
    assert later["stored"] > 0 and later["created_users"] == 0
    stamps = list(Activity.objects.order_by("timestamp").values_list("timestamp", flat=True))
    assert stamps[-1] > end and len(stamps) == count + later["stored"]


def test_demo_arguments_validated():
    with pytest.raises(Exception):
        call_command("tracking", "demo", "--users", "0", stdout=io.StringIO(), stderr=io.StringIO())


@pytest.mark.django_db(transaction=False)
def test_demo_setup_end_to_end(tmp_path):
    """The command `make demo` runs, on a fresh SQLite file: idempotent, admin from DEMO_PASSWORD."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKING_", "DJANGO_"))}
    env.pop("DATABASE_URL", None)
    env.update(
        EXAMPLE_VAR_DIR=str(tmp_path / "var"), PYTHONPATH=str(ROOT), DEMO_PASSWORD="demo-pw-42"
    )
    cmd = [
        sys.executable,
        str(ROOT / "example" / "manage.py"),
        "demo_setup",
        "--users",
        "8",
        "--days",
        "1",
    ]
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    for url in ("/admin/", "/api/tracking/activities/", "/api/tracking/dashboard/"):
        assert f"http://127.0.0.1:8000{url}" in first.stdout
    db = tmp_path / "var" / "db.sqlite3"
    assert (tmp_path / "var" / "geoip" / "GeoLite2-City.mmdb").exists()
    with sqlite3.connect(db) as conn:
        count = conn.execute("select count(*) from tracking_activity").fetchone()[0]
        assert count > 50
        assert (
            conn.execute("select count(*) from tracking_activity where city != ''").fetchone()[0]
            > 0
        )
        assert conn.execute(
            "select is_superuser from auth_user where username='admin'"
        ).fetchone() == (1,)
        assert conn.execute("pragma journal_mode").fetchone()[0] == "wal"
    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    with sqlite3.connect(db) as conn:
        assert conn.execute("select count(*) from tracking_activity").fetchone()[0] == count
        assert (
            conn.execute("select count(*) from auth_user where username='admin'").fetchone()[0] == 1
        )
    with sqlite3.connect(db) as conn:
        encoded = conn.execute("select password from auth_user where username='admin'").fetchone()[
            0
        ]
    from django.contrib.auth.hashers import check_password
    from django.test import override_settings

    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.PBKDF2PasswordHasher"]):
        assert check_password("demo-pw-42", encoded)
