"""The optional PostgreSQL trigger; on other databases the command explains it is PG-only."""

from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

import pytest
from django.db import DatabaseError, connection, transaction

from tracking.integrity.sealing import delete_activities, seal_pending
from tracking.integrity.verify import verify
from tracking.models import Activity
from tracking.testing.factories import make_activities, make_activity

from .integrity_helpers import db_id, run_tracking, sql

UTC = dt_timezone.utc

pytestmark = pytest.mark.django_db

on_postgres = connection.vendor == "postgresql"


def refused(statement, params=()) -> bool:
    try:
        with transaction.atomic():
            sql(statement, params)
    except DatabaseError as exc:
        assert "tracking:" in str(exc)
        return True
    return False


@pytest.fixture
def trigger():
    code, out = run_tracking("postgres", "install-trigger")
    assert code == 0, out
    yield
    run_tracking("postgres", "remove-trigger")


def test_command_on_non_postgres_explains_it_is_postgres_only():
    if on_postgres:
        code, out = run_tracking("postgres", "status")
        assert code == 0 and "not installed" in out
        return
    for action in ("install-trigger", "remove-trigger"):
        code, out = run_tracking("postgres", action)
        assert code == 2 and "PostgreSQL-only" in out and connection.vendor in out
    code, out = run_tracking("postgres", "status")
    assert code == 0 and "PostgreSQL-only" in out


def test_trigger_refuses_raw_changes_of_sealed_rows(django_user_model):
    if not on_postgres:
        code, out = run_tracking("postgres", "install-trigger")
        assert code == 2 and "PostgreSQL-only" in out
        return
    user = django_user_model.objects.create_user("u1")
    rows = make_activities(3, user=user)
    seal_pending()
    code, out = run_tracking("postgres", "install-trigger")
    assert code == 0
    assert "installed" in run_tracking("postgres", "status")[1]
    victim = Activity.objects.order_by("seq").first()
    pk = db_id(victim.pk)
    assert refused("UPDATE tracking_activity SET city = 'X' WHERE id = %s", [pk])
    assert refused("UPDATE tracking_activity SET seq = 99 WHERE id = %s", [pk])
    assert refused("UPDATE tracking_activity SET mac = '' WHERE id = %s", [pk])
    assert refused("DELETE FROM tracking_activity WHERE id = %s", [pk])
    sql("SET CONSTRAINTS ALL IMMEDIATE")  # fire the test transaction's deferred FK checks
    assert refused("TRUNCATE tracking_activity")
    sql("SET CONSTRAINTS ALL DEFERRED")
    # Review state, user SET_NULL and re-encrypted ciphertext are legitimate changes.
    assert not refused(
        "UPDATE tracking_activity SET flagged = true, review_status = 'confirmed', reviewed_at = now() WHERE id = %s",
        [pk],
    )
    (ct,) = Activity.objects.filter(pk=victim.pk).values_list("headers", flat=True)
    assert not refused("UPDATE tracking_activity SET headers = %s WHERE id = %s", [str(ct), pk])
    user.delete()
    assert not Activity.objects.filter(user__isnull=False).exists()
    # Unsealed rows are sealed (seq assignment) and may be changed by the app before that.
    fresh = make_activity()
    assert seal_pending() == 1
    # The application's deletion path and retention pass.
    assert delete_activities([victim.pk], reason="api", by="staff") == 1
    old = make_activities(2, now=datetime.now(UTC) - timedelta(days=400))
    seal_pending()
    code, out = run_tracking("purge", "--days", "365")
    assert code == 0, out
    assert not Activity.objects.filter(pk__in=[o.pk for o in old]).exists()
    assert Activity.objects.filter(pk=fresh.pk).exists()
    assert verify().ok
    assert len(rows) == 3
    code, out = run_tracking("postgres", "remove-trigger")
    assert code == 0
    assert "not installed" in run_tracking("postgres", "status")[1]
    assert not refused("UPDATE tracking_activity SET city = 'X' WHERE id = %s", [db_id(fresh.pk)])
    assert not verify().ok
