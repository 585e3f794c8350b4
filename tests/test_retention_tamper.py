"""Finding 2: retention must not erase tampered rows and sign it off.

Raw SQL edits the timestamps of sealed rows (or of seals) to make recent activity look old;
the purge takes its range from signed seal times, checks what it would delete against the
seals, refuses and names the rows; `tracking verify --anchor` still reports them."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from unittest import mock

import pytest

from tracking.integrity.sealing import chain_head, seal_pending
from tracking.models import Activity, Checkpoint, Seal, Tombstone
from tracking.storage.retention import purge
from tracking.testing.factories import make_activities

from .integrity_helpers import db_id, run_tracking, sql

UTC = timezone.utc

pytestmark = pytest.mark.django_db
NOW = datetime.now(UTC)


def seal_as_of(when: datetime) -> None:
    with mock.patch("tracking.integrity.sealing._now", return_value=when):
        seal_pending(wait=True)


def history():
    """Rows recorded (and sealed) 400 and 100 days ago, and 3 recent sealed rows."""
    for age in (400, 100):
        make_activities(3, now=NOW - timedelta(days=age), type="AUTH")
        seal_as_of(NOW - timedelta(days=age) + timedelta(minutes=5))
    recent = make_activities(3, now=NOW - timedelta(hours=1), type="PAYMENT")
    seal_pending(wait=True)
    return recent


def backdate(rows, days=500):
    for row in rows:
        sql(
            "UPDATE tracking_activity SET timestamp = %s WHERE id = %s",
            [NOW - timedelta(days=days), db_id(row.pk)],
        )


@pytest.mark.parametrize("window", [["--days", "1"], ["--days", "30"], ["--days", "365"]])
def test_backdated_sealed_rows_make_the_purge_refuse(window):
    recent = history()
    head = chain_head().chain_hash
    backdate(recent[:2])
    code, out = run_tracking("purge", *window)
    assert code == 1 and "REFUSED" in out and "nothing was deleted" in out, out
    assert all(str(r.pk) in out for r in recent[:2]) and str(recent[2].pk) not in out
    assert Activity.objects.count() == 9
    assert not Checkpoint.objects.exists() and not Tombstone.objects.exists()
    code, out = run_tracking("verify", "--anchor", head)
    assert code == 1 and all(str(r.pk) in out for r in recent[:2])


def test_backdated_rows_inside_the_old_range_refuse_too():
    history()
    victim = Activity.objects.filter(type="AUTH").order_by("timestamp").last()  # 100 days old
    backdate([victim], days=1000)
    report = purge(NOW - timedelta(days=365))
    assert report.refused and report.removed == 0
    assert report.mismatch_count == 1 and str(victim.pk) in report.mismatches[0]
    assert Activity.objects.count() == 9


def test_a_backdated_seal_cannot_widen_the_range():
    recent = history()
    newest = Seal.objects.order_by("-last_seq").first()
    sql(
        "UPDATE tracking_seal SET created_at = %s WHERE id = %s",
        [NOW - timedelta(days=90), newest.pk],
    )
    report = purge(NOW - timedelta(days=30))
    assert report.refused and any("seal" in m for m in report.mismatches)
    assert Activity.objects.filter(pk__in=[r.pk for r in recent]).count() == 3
    assert report.removed == 0


def test_json_report_names_the_mismatches_and_exits_1():
    recent = history()
    backdate(recent[:1])
    code, out = run_tracking("purge", "--days", "30", "--json")
    data = json.loads(out)
    assert code == 1 and data["refused"] is True and data["mismatch_count"] == 1
    assert data["mismatches"][0].startswith(str(recent[0].pk))


@pytest.mark.parametrize(("days", "left"), [(1, 3), (30, 3), (200, 6), (365, 6), (500, 9)])
def test_untampered_history_is_purged_by_signed_seal_times(days, left):
    history()
    report = purge(NOW - timedelta(days=days))
    assert not report.refused, report.mismatches
    assert Activity.objects.count() == left
    assert run_tracking("verify")[0] == 0


def test_content_edit_of_an_old_sealed_row_refuses_the_purge():
    history()
    victim = Activity.objects.filter(type="AUTH").order_by("timestamp").first()
    sql("UPDATE tracking_activity SET city = 'forged' WHERE id = %s", [db_id(victim.pk)])
    report = purge(NOW - timedelta(days=30))
    assert report.refused and "content changed" in report.mismatches[0]
    assert Activity.objects.filter(pk=victim.pk).exists()


def test_a_seal_whose_leaves_were_rewritten_to_match_a_tampered_row_refuses():
    from tracking.integrity import macs as integrity

    history()
    victim = Activity.objects.filter(type="AUTH").order_by("seq").first()
    sql("UPDATE tracking_activity SET city = 'forged' WHERE id = %s", [db_id(victim.pk)])
    forged = Activity.objects.get(pk=victim.pk)
    new_leaf = integrity.leaf_hash(forged)  # anyone can hash; only the MAC needs a key
    seal = Seal.objects.get(first_seq__lte=victim.seq, last_seq__gte=victim.seq)
    leaves = seal.leaves.replace(
        f"{victim.pk}:{integrity.leaf_hash(victim)}", f"{victim.pk}:{new_leaf}"
    )
    assert leaves != seal.leaves
    sql("UPDATE tracking_seal SET leaves = %s WHERE id = %s", [leaves, seal.pk])
    report = purge(NOW - timedelta(days=30))
    assert report.refused and report.removed == 0
    assert any("digest" in m for m in report.mismatches)
