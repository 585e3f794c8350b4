"""`tracking purge` and TRACKING_RETENTION_DAYS: batches, checkpoint, chain still verifies."""

import json
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

import pytest
from django.core import checks
from django.db import connection
from django.test import override_settings

from tracking.integrity.sealing import seal_pending
from tracking.integrity.verify import verify
from tracking.models import Activity, Checkpoint, Finding, Seal, Tombstone
from tracking.storage.retention import purge
from tracking.testing.factories import make_activities

from .integrity_helpers import run_tracking, sql

UTC = dt_timezone.utc

pytestmark = pytest.mark.django_db

NOW = datetime.now(UTC)


def seal_as_of(when: datetime) -> int:
    """Seal what is pending as the sealer did at ``when`` (seal times are what purge trusts)."""
    from unittest import mock

    with mock.patch("tracking.integrity.sealing._now", return_value=when.astimezone(UTC)):
        return seal_pending(wait=True)


def _old_and_new(old=6, new=4, *, sealed=True):
    """Old rows (sealed when they were recorded, unless ``sealed=False``) and newer ones."""
    old_rows = make_activities(old, now=NOW - timedelta(days=100), type="AUTH")
    if sealed:
        seal_as_of(NOW - timedelta(days=100) + timedelta(minutes=1))
    new_rows = make_activities(new, now=NOW - timedelta(days=1), type="PAYMENT")
    return old_rows, new_rows


def test_purge_days_removes_old_rows_in_batches_and_keeps_the_chain_verifiable():
    old, new = _old_and_new()
    for row in old[:2]:
        Finding.objects.create(
            activity_id=row.pk, timestamp=row.timestamp, detector="d", tag="t", score=1, reason="r"
        )
    code, out = run_tracking("purge", "--days", "30", "--batch-size", "2")
    assert code == 0, out
    assert "Removed 6 activities" in out and "AUTH: 6" in out
    assert set(Activity.objects.values_list("id", flat=True)) == {r.pk for r in new}
    assert not Finding.objects.exists()
    cp = Checkpoint.objects.get()
    assert cp.removed == 6 and cp.through_seq == 6
    assert Seal.objects.exists()  # seals are kept: the chain verifies end to end
    report = verify()
    assert report.ok, report.problems
    assert report.purged_absent == 6 and report.purged_through == 6


def test_purge_reports_batches_for_small_batch_size():
    _old_and_new(old=5, new=0)
    report = purge(NOW - timedelta(days=30), batch_size=2)
    if connection.vendor == "postgresql" and report.partitions:
        assert report.removed == 5
    else:
        assert report.batches == 3
    assert report.by_type == {"AUTH": 5}
    assert not Activity.objects.exists()


def test_dry_run_changes_nothing_and_reports_counts():
    _old_and_new(sealed=False)
    code, out = run_tracking("purge", "--days", "30", "--dry-run")
    assert code == 0
    assert "Would remove 6 activities" in out and "AUTH: 6" in out
    assert Activity.objects.count() == 10
    assert not Checkpoint.objects.exists()
    assert not Seal.objects.exists()  # a dry run does not even seal


def test_before_date_and_json_output():
    _old_and_new()
    cutoff = (NOW - timedelta(days=50)).date().isoformat()
    code, out = run_tracking("purge", "--before", cutoff, "--json")
    assert code == 0
    data = json.loads(out)
    assert data["removed"] == 6 and data["by_type"] == {"AUTH": 6} and data["dry_run"] is False
    assert verify().ok


def test_unsealed_old_rows_are_sealed_before_being_purged():
    old, new = _old_and_new(sealed=False)
    assert Activity.objects.filter(seq__isnull=True).count() == 10
    report = purge(NOW - timedelta(days=30))
    assert report.sealed_first == 10
    # Sealed now, after the cutoff: outside the checkpoint's range, so one tombstone each.
    assert report.removed == 6 and report.tombstoned == 6
    assert Activity.objects.filter(seq__isnull=True).count() == 0
    assert verify().ok


def test_old_rows_sealed_after_newer_ones_get_tombstones():
    make_activities(3, now=NOW - timedelta(days=1))
    seal_pending()
    late = make_activities(2, now=NOW - timedelta(days=200))  # a late import of old data
    seal_pending()
    report = purge(NOW - timedelta(days=30))
    assert report.removed == 2 and report.tombstoned == 2
    assert Tombstone.objects.filter(reason="purge").count() == 2
    assert not Activity.objects.filter(pk__in=[r.pk for r in late]).exists()
    assert Activity.objects.count() == 3
    assert verify().ok


def test_purge_keeps_rows_with_invalid_mac_as_evidence():
    old, _ = _old_and_new(sealed=False)
    from tracking.storage import partitioning

    from .integrity_helpers import db_id

    partitioning.ensure_partitions(refresh=True)  # PostgreSQL: old months get partitions
    sql("UPDATE tracking_activity SET city = 'forged' WHERE id = %s", [db_id(old[0].pk)])
    report = purge(NOW - timedelta(days=30))
    assert report.removed == 5 and report.partitions == []  # no partition dropped over evidence
    assert Activity.objects.filter(pk=old[0].pk).exists()
    report = verify()
    assert report.ids() == {str(old[0].pk)}


def test_interrupted_purge_still_verifies_and_a_rerun_finishes(monkeypatch):
    _old_and_new()
    from tracking.storage import retention

    def boom(*args, **kwargs):
        raise RuntimeError("killed")

    monkeypatch.setattr(retention, "_drop_partitions", boom)
    with pytest.raises(RuntimeError):
        purge(NOW - timedelta(days=30))
    assert Checkpoint.objects.count() == 1
    assert verify().ok  # the checkpoint was written before anything was deleted
    monkeypatch.undo()
    purge(NOW - timedelta(days=30))
    assert Activity.objects.count() == 4
    assert verify().ok


def test_forged_checkpoint_does_not_excuse_deletions():
    old, _ = _old_and_new()
    seal_pending()
    purge(NOW - timedelta(days=30))
    sql("UPDATE tracking_checkpoint SET through_seq = through_seq + 4")
    sql("DELETE FROM tracking_activity WHERE seq <= 10")
    code, out = run_tracking("verify")
    assert code == 1 and "checkpoint" in out and "REMOVED" in out


def test_purge_without_arguments_uses_retention_days_setting():
    _old_and_new()
    code, out = run_tracking("purge")
    assert code == 2 and "TRACKING_RETENTION_DAYS" in out
    assert Activity.objects.count() == 10
    with override_settings(TRACKING_RETENTION_DAYS=30):
        code, out = run_tracking("purge")
    assert code == 0 and "Removed 6" in out


def test_purge_rejects_bad_arguments():
    assert run_tracking("purge", "--days", "-1")[0] == 2
    assert run_tracking("purge", "--days", "5", "--batch-size", "0")[0] == 2
    make_activities(2)
    code, out = run_tracking("purge", "--before", "2999-01-01")
    assert code == 2 and "future" in out
    assert Activity.objects.count() == 2 and not Checkpoint.objects.exists()
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="not allowed with"):
        run_tracking("purge", "--days", "5", "--before", "2020-01-01")
    with pytest.raises(CommandError, match="not a date"):
        run_tracking("purge", "--before", "not-a-date")


@pytest.mark.parametrize("value", [0, -3, "30", 2.5, True])
def test_system_check_rejects_invalid_retention_days(value):
    with override_settings(TRACKING_RETENTION_DAYS=value):
        ids = {m.id for m in checks.run_checks()}
    assert "tracking.E070" in ids


def test_system_check_accepts_valid_retention_days():
    for value in (None, 1, 365):
        with override_settings(TRACKING_RETENTION_DAYS=value):
            ids = {m.id for m in checks.run_checks()}
        assert "tracking.E070" not in ids


def test_periodic_tasks_seal_and_purge_by_retention_days():
    from tracking.storage import tasks as tasks_periodic

    _old_and_new(sealed=False)
    assert tasks_periodic.seal() == 10
    assert tasks_periodic.purge() is None  # no TRACKING_RETENTION_DAYS: keeps everything
    with override_settings(TRACKING_RETENTION_DAYS=30):
        result = tasks_periodic.purge()
    assert result["removed"] == 6
    assert verify().ok


def test_partitions_are_dropped_under_the_checkpoint_on_postgres():
    from tracking.storage import partitioning

    old, new = _old_and_new()
    partitioning.ensure_partitions(refresh=True)
    report = purge(NOW - timedelta(days=30))
    if partitioning.is_partitioned():
        assert report.partitions, "whole old months are dropped, not deleted row by row"
    else:
        assert report.partitions == []
    assert report.removed == 6
    assert set(Activity.objects.values_list("id", flat=True)) == {r.pk for r in new}
    assert verify().ok


def test_days_zero_purges_everything_recorded_before_now():
    _old_and_new()
    code, out = run_tracking("purge", "--days", "0")
    assert code == 0 and "Removed 10" in out
    assert not Activity.objects.exists()
    assert verify().ok
