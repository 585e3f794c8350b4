"""The verifier as a library (tracking.integrity.verify.verify) and end to end through the real writer."""

import json
import time
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

import pytest
from django.test import override_settings

from tracking.events import Event
from tracking.integrity import verify as verify_module
from tracking.integrity.sealing import delete_activities, seal_pending
from tracking.integrity.verify import CHANGED, INSERTED, REMOVED, verify
from tracking.models import Activity, Seal
from tracking.pipeline.ingest import ingest
from tracking.testing.factories import make_activities

from .integrity_helpers import db_id, insert_copy, run_tracking, sql

UTC = dt_timezone.utc

pytestmark = pytest.mark.django_db


def test_empty_log_verifies():
    report = verify()
    assert report.ok and report.seals == 0 and report.head == ""
    assert "OK" in "\n".join(report.summary_lines())


def test_report_names_each_problem_by_kind_and_id():
    make_activities(6)
    seal_pending()
    rows = list(Activity.objects.order_by("seq"))
    sql("UPDATE tracking_activity SET os = 'X' WHERE id = %s", [db_id(rows[0].pk)])
    sql("DELETE FROM tracking_activity WHERE id = %s", [db_id(rows[1].pk)])
    import uuid

    new = uuid.uuid4()
    insert_copy(rows[2], new, mac="")
    report = verify()
    assert not report.ok
    assert report.ids(CHANGED) == {str(rows[0].pk)}
    assert report.ids(REMOVED) == {str(rows[1].pk)}
    assert report.ids(INSERTED) == {str(new)}
    data = report.to_dict()
    assert data["ok"] is False and data["counts"] == {"changed": 1, "removed": 1, "inserted": 1}
    json.dumps(data)  # JSON-safe
    changed = next(p for p in data["problems"] if p["kind"] == "changed")
    assert changed["seq"] == rows[0].seq and changed["seal_id"] == Seal.objects.get().pk


def test_rows_are_checked_in_bounded_chunks_across_many_seals(monkeypatch):
    monkeypatch.setattr(verify_module, "CHUNK", 7)
    make_activities(40)
    with override_settings(TRACKING_SEAL_BATCH_SIZE=3):
        seal_pending()
    assert Seal.objects.count() == 14
    victim = Activity.objects.get(seq=23)
    sql("UPDATE tracking_activity SET browser = 'X' WHERE id = %s", [db_id(victim.pk)])
    report = verify()
    assert report.sealed_rows_checked == 40 and report.seals == 14
    assert report.ids() == {str(victim.pk)}


def test_verify_is_fast_enough_for_routine_use():
    make_activities(2000)
    seal_pending()
    start = time.perf_counter()
    report = verify()
    elapsed = time.perf_counter() - start
    assert report.ok and report.sealed_rows_checked == 2000
    assert elapsed < 15, f"verify took {elapsed:.1f}s for 2000 rows"


def test_end_to_end_through_the_writer_seal_on_write(django_capture_on_commit_callbacks):
    events = [
        Event(
            type="AUTH",
            username=f"u{i}",
            ip_address="81.2.69.10",
            endpoint="/login/",
            method="POST",
            status=200,
            duration=12.5,
            headers={"User-Agent": "x"},
            params={"query": {"password": "p"}},
            timestamp=datetime.now(UTC) - timedelta(seconds=i),
        )
        for i in range(5)
    ]
    with django_capture_on_commit_callbacks(execute=True):
        result = ingest(events)
    assert result.stored == 5
    # The writer sealed after its commit (TRACKING_SEAL_ON_WRITE).
    assert Activity.objects.filter(seq__isnull=True).count() == 0
    assert run_tracking("verify")[0] == 0
    victim = Activity.objects.get(username="u3")
    sql("UPDATE tracking_activity SET username = 'admin' WHERE id = %s", [db_id(victim.pk)])
    code, out = run_tracking("verify")
    assert code == 1 and str(victim.pk) in out


def test_review_and_legitimate_deletion_keep_the_log_verifiable(staff_user):
    from tracking.detection.review import delete_activity

    make_activities(4)
    seal_pending()
    rows = list(Activity.objects.order_by("seq"))
    Activity.objects.filter(pk=rows[0].pk).update(flagged=True, review_status="dismissed")
    delete_activity(rows[1], by=staff_user)
    delete_activities([rows[2].pk], reason="gdpr", by="dpo")
    report = verify()
    assert report.ok, report.problems
    assert report.deleted_ok == 2 and report.tombstones == 2


def test_json_output_of_the_command_is_machine_readable():
    make_activities(2)
    seal_pending()
    code, out = run_tracking("verify", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["ok"] is True and data["seals"] == 1 and data["sealed_rows_checked"] == 2
    assert len(data["head"]) == 64


def test_sealed_log_still_verifies_after_encryption_key_rotation(settings):
    from tracking.integrity.crypto import generate_key

    make_activities(5)
    seal_pending()
    old_key = settings.TRACKING_ENCRYPTION_KEYS[0]
    settings.TRACKING_ENCRYPTION_KEYS = [generate_key(), old_key]
    code, out = run_tracking("reencrypt")
    assert code == 0, out
    settings.TRACKING_ENCRYPTION_KEYS = settings.TRACKING_ENCRYPTION_KEYS[:1]  # old key removed
    assert run_tracking("verify")[0] == 0
    settings.TRACKING_ENCRYPTION_KEYS = [generate_key()]  # a wrong key: rows cannot be proven
    code, out = run_tracking("verify")
    assert code == 1 and "cannot be decrypted" in out
