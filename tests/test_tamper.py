"""Tampering behind the application's back (raw SQL), then `manage.py tracking verify`."""

import json
import uuid
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

import pytest

from tracking.integrity.sealing import delete_activities, seal_pending
from tracking.models import Activity, Seal
from tracking.testing.factories import make_activities, make_activity

from .integrity_helpers import db_id, insert_copy, run_tracking, sql

UTC = dt_timezone.utc

pytestmark = pytest.mark.django_db


@pytest.fixture
def sealed_rows(db):
    """Twelve recorded rows, sealed; returned in seq order."""
    make_activities(12)
    assert seal_pending() == 12
    return list(Activity.objects.order_by("seq"))


def test_clean_log_verifies_with_exit_code_zero(sealed_rows):
    make_activity()  # one unsealed, valid row
    code, out = run_tracking("verify")
    assert code == 0, out
    assert "OK" in out
    assert "12 sealed, 1 unsealed" in out


def test_update_of_a_sealed_field_is_reported_as_changed_with_its_id(sealed_rows):
    victim = sealed_rows[4]
    assert (
        sql("UPDATE tracking_activity SET city = 'Nowhere' WHERE id = %s", [db_id(victim.pk)]) == 1
    )
    code, out = run_tracking("verify")
    assert code == 1
    assert str(victim.pk) in out
    assert "CHANGED" in out and "content changed" in out
    assert sum(str(r.pk) in out for r in sealed_rows) == 1


@pytest.mark.parametrize(
    "column,value",
    [
        ("username", "mallory"),
        ("status", 200 + 1),
        ("risk_score", 0.0001),
        ("ip_address", "203.0.113.9"),
        ("timestamp", None),
        ("tags", ",cleared,"),
    ],
)
def test_every_kind_of_canonical_column_edit_is_detected(sealed_rows, column, value):
    victim = sealed_rows[0]
    if column == "timestamp":
        Activity.objects.filter(pk=victim.pk).update(timestamp=victim.timestamp - timedelta(days=1))
    else:
        sql(f"UPDATE tracking_activity SET {column} = %s WHERE id = %s", [value, db_id(victim.pk)])
    code, out = run_tracking("verify")
    assert code == 1 and str(victim.pk) in out


def test_review_columns_may_change_legitimately(sealed_rows, staff_user):
    victim = sealed_rows[1]
    Activity.objects.filter(pk=victim.pk).update(
        flagged=True,
        review_status="confirmed",
        reviewed_by=staff_user,
        reviewed_at=datetime.now(UTC),
    )
    code, out = run_tracking("verify")
    assert code == 0, out


def test_raw_delete_is_reported_as_removed(sealed_rows):
    victim = sealed_rows[7]
    assert sql("DELETE FROM tracking_activity WHERE id = %s", [db_id(victim.pk)]) == 1
    code, out = run_tracking("verify")
    assert code == 1
    assert f"activity {victim.pk}" in out and "REMOVED" in out


def test_raw_insert_of_an_unsealed_row_is_reported_as_inserted(sealed_rows):
    new_id = uuid.uuid4()
    insert_copy(sealed_rows[2], new_id)
    code, out = run_tracking("verify")
    assert code == 1
    assert str(new_id) in out and "INSERTED" in out


def test_raw_insert_with_a_copied_mac_and_empty_mac_are_both_reported(sealed_rows):
    a, b = uuid.uuid4(), uuid.uuid4()
    insert_copy(sealed_rows[2], a)
    insert_copy(sealed_rows[3], b, mac="")
    code, out = run_tracking("verify", "--json")
    assert code == 1
    report = json.loads(out)
    assert {p["activity_id"] for p in report["problems"]} == {str(a), str(b)}
    assert report["ok"] is False


def test_raw_insert_into_a_sealed_seq_range_is_reported(sealed_rows):
    new_id = uuid.uuid4()
    insert_copy(sealed_rows[5], new_id, keep_seq=True)
    code, out = run_tracking("verify")
    assert code == 1
    assert str(new_id) in out and "INSERTED" in out
    assert str(sealed_rows[5].pk) not in out


def test_row_with_seq_beyond_the_chain_is_reported(sealed_rows):
    row = make_activity()
    sql("UPDATE tracking_activity SET seq = 999 WHERE id = %s", [db_id(row.pk)])
    code, out = run_tracking("verify")
    assert code == 1 and str(row.pk) in out and "no seal covers it" in out


def test_swapped_seq_numbers_are_reported(sealed_rows):
    a, b = sealed_rows[2], sealed_rows[3]
    sql("UPDATE tracking_activity SET seq = -1 WHERE id = %s", [db_id(a.pk)])
    sql("UPDATE tracking_activity SET seq = %s WHERE id = %s", [a.seq, db_id(b.pk)])
    sql("UPDATE tracking_activity SET seq = %s WHERE id = %s", [b.seq, db_id(a.pk)])
    code, out = run_tracking("verify")
    assert code == 1
    assert str(a.pk) in out and str(b.pk) in out and "moved" in out


def test_row_mac_edit_is_reported(sealed_rows):
    victim = sealed_rows[0]
    sql("UPDATE tracking_activity SET mac = %s WHERE id = %s", ["x:" + "0" * 64, db_id(victim.pk)])
    code, out = run_tracking("verify")
    assert code == 1 and str(victim.pk) in out


def test_ciphertext_swapped_between_rows_is_reported(sealed_rows):
    a, b = sealed_rows[0], sealed_rows[1]
    (ct,) = Activity.objects.filter(pk=a.pk).values_list("headers", flat=True)
    sql("UPDATE tracking_activity SET headers = %s WHERE id = %s", [str(ct), db_id(b.pk)])
    code, out = run_tracking("verify")
    assert code == 1 and str(b.pk) in out and "cannot be decrypted" in out


def test_edited_seal_leaves_digest_and_mac_are_reported(sealed_rows):
    seal = Seal.objects.order_by("last_seq").first()
    forged = seal.leaves.replace(seal.leaves[-64:], "f" * 64)
    sql("UPDATE tracking_seal SET leaves = %s WHERE id = %s", [forged, seal.pk])
    code, out = run_tracking("verify")
    assert code == 1 and "seal edited" in out


def test_seal_mac_edit_is_reported(sealed_rows):
    seal = Seal.objects.first()
    sql("UPDATE tracking_seal SET mac = %s WHERE id = %s", [seal.key_id + ":" + "0" * 64, seal.pk])
    code, out = run_tracking("verify")
    assert code == 1 and "seal signature invalid" in out


def test_deleted_seal_breaks_the_chain_and_its_rows_are_reported():
    from django.test import override_settings

    make_activities(9)
    with override_settings(TRACKING_SEAL_BATCH_SIZE=3):
        seal_pending()
    middle = Seal.objects.order_by("last_seq")[1]
    sql("DELETE FROM tracking_seal WHERE id = %s", [middle.pk])
    code, out = run_tracking("verify")
    assert code == 1
    assert "chain broken" in out
    for row in Activity.objects.filter(seq__gte=middle.first_seq, seq__lte=middle.last_seq):
        assert str(row.pk) in out


def test_deleted_head_seal_leaves_rows_without_a_seal():
    from django.test import override_settings

    make_activities(4)
    with override_settings(TRACKING_SEAL_BATCH_SIZE=2):
        seal_pending()
    head = Seal.objects.order_by("-last_seq").first()
    anchor = head.chain_hash
    sql("DELETE FROM tracking_seal WHERE id = %s", [head.pk])
    code, out = run_tracking("verify")
    assert code == 1 and "no seal covers it" in out
    # Rows and seal removed together: only an anchor kept outside the database tells.
    sql("DELETE FROM tracking_activity WHERE seq > %s", [head.first_seq - 1])
    assert run_tracking("verify")[0] == 0
    code, out = run_tracking("verify", "--anchor", anchor)
    assert code == 1 and "not in the chain" in out


def test_forged_tombstone_does_not_excuse_a_raw_delete(sealed_rows):
    good, victim = sealed_rows[0], sealed_rows[1]
    delete_activities([good.pk], reason="api", by="staff")
    sql(
        "INSERT INTO tracking_tombstone (activity_id, seq, leaf, activity_timestamp, deleted_at, deleted_by, reason, key_id, mac)"
        " SELECT %s, seq, leaf, activity_timestamp, deleted_at, deleted_by, reason, key_id, mac FROM tracking_tombstone",
        [db_id(victim.pk)],
    )
    sql("DELETE FROM tracking_activity WHERE id = %s", [db_id(victim.pk)])
    code, out = run_tracking("verify")
    assert code == 1
    assert "tombstone signature invalid" in out and "REMOVED" in out
    assert str(victim.pk) in out and str(good.pk) not in out


def test_deleted_tombstone_turns_a_legitimate_deletion_into_a_removal(sealed_rows):
    victim = sealed_rows[3]
    delete_activities([victim.pk], reason="api", by="staff")
    assert run_tracking("verify")[0] == 0
    sql("DELETE FROM tracking_tombstone")
    code, out = run_tracking("verify")
    assert code == 1 and str(victim.pk) in out


def test_row_reinserted_after_its_deletion_is_reported(sealed_rows):
    victim = sealed_rows[3]
    other = sealed_rows[4]
    delete_activities([victim.pk], reason="api")
    insert_copy(other, victim.pk)
    code, out = run_tracking("verify")
    assert code == 1 and str(victim.pk) in out and "INSERTED" in out


def test_unsealed_row_updated_by_raw_sql_is_reported():
    row = make_activity()
    sql("UPDATE tracking_activity SET endpoint = '/other/' WHERE id = %s", [db_id(row.pk)])
    code, out = run_tracking("verify")
    assert code == 1 and str(row.pk) in out and "changed" in out


def test_legitimate_deletions_and_purges_verify(sealed_rows):
    delete_activities([sealed_rows[0].pk, sealed_rows[5].pk], reason="api", by="staff")
    code, out = run_tracking(
        "purge", "--before", (sealed_rows[6].timestamp + timedelta(microseconds=1)).isoformat()
    )
    assert code == 0, out
    code, out = run_tracking("verify")
    assert code == 0, out


def test_since_limits_row_checks_but_not_the_chain(sealed_rows):
    victim = sealed_rows[0]
    sql("UPDATE tracking_activity SET city = 'X' WHERE id = %s", [db_id(victim.pk)])
    future = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    code, out = run_tracking("verify", "--since", future)
    assert code == 0, out
    assert "0 sealed, 0 unsealed" in out
    seal = Seal.objects.first()
    sql("UPDATE tracking_seal SET prev_hash = %s WHERE id = %s", ["1" * 64, seal.pk])
    code, out = run_tracking("verify", "--since", future)
    assert code == 1 and "chain broken" in out
    code, out = run_tracking("verify", "--since", "2000-01-01")
    assert code == 1 and str(victim.pk) in out


def test_since_rejects_a_bad_date():
    from django.core.management.base import CommandError

    with pytest.raises((CommandError, SystemExit)):
        run_tracking("verify", "--since", "yesterday-ish")


def test_verify_without_seal_keys_exits_2(sealed_rows, settings):
    settings.TRACKING_SEAL_KEYS = []
    code, out = run_tracking("verify")
    assert code == 2 and "TRACKING_SEAL_KEYS" in out


def test_since_checks_only_activities_at_or_after_that_time():
    old = make_activities(3, now=datetime.now(UTC) - timedelta(days=10))
    new = make_activities(3)
    seal_pending()  # one seal holds both: the row timestamps decide the scope
    sql("UPDATE tracking_activity SET city = 'X' WHERE id = %s", [db_id(old[0].pk)])
    since = (datetime.now(UTC) - timedelta(days=2)).isoformat()
    code, out = run_tracking("verify", "--since", since)
    assert code == 0, out
    assert "3 sealed" in out
    assert run_tracking("verify")[0] == 1
    sql("UPDATE tracking_activity SET city = 'X' WHERE id = %s", [db_id(new[1].pk)])
    code, out = run_tracking("verify", "--since", since)
    assert code == 1 and str(new[1].pk) in out and str(old[0].pk) not in out


@pytest.mark.django_db(transaction=True)
def test_recorded_through_track_sealed_on_write_then_tampered(client):
    """The real path end to end: @track views (sync and async hand-off) commit, the writer
    seals after its commit, verify passes; then each kind of raw tampering is reported."""
    from tracking.pipeline import writer

    for i in range(3):
        assert (
            client.post("/t/rec/login/", {"username": f"u{i}", "password": "pw"}).status_code == 200
        )
        assert client.post("/t/rec/pay/", {"amount": i}).status_code == 200
    assert writer.flush(10)
    rows = list(Activity.objects.order_by("seq"))
    assert len(rows) == 6
    assert all(r.seq is not None for r in rows), "sealed on write"
    assert run_tracking("verify")[0] == 0
    changed, removed = rows[1], rows[4]
    sql("UPDATE tracking_activity SET status = 201 WHERE id = %s", [db_id(changed.pk)])
    sql("DELETE FROM tracking_activity WHERE id = %s", [db_id(removed.pk)])
    new_id = uuid.uuid4()
    insert_copy(rows[0], new_id)
    code, out = run_tracking("verify")
    assert code == 1
    assert f"CHANGED    activity {changed.pk}" in out
    assert f"REMOVED    activity {removed.pk}" in out
    assert f"INSERTED   activity {new_id}" in out


def test_garbage_in_a_seal_is_reported_not_a_crash(sealed_rows):
    seal = Seal.objects.get()
    sql("UPDATE tracking_seal SET leaves = %s WHERE id = %s", ["not-a-uuid:abc\n\n:", seal.pk])
    code, out = run_tracking("verify")
    assert code == 1 and "seal edited" in out and "not 'id:hash'" in out


@pytest.mark.parametrize(
    "column,value",
    [
        ("key_id", "'deadbeef'"),
        ("count", "count + 1"),
        ("first_seq", "first_seq + 1"),
        ("last_seq", "last_seq + 100"),
        ("digest", "'" + "a" * 64 + "'"),
        ("chain_hash", "'" + "b" * 64 + "'"),
        ("prev_hash", "'" + "c" * 64 + "'"),
    ],
)
def test_every_seal_column_edit_is_reported(sealed_rows, column, value):
    seal = Seal.objects.get()
    sql(f"UPDATE tracking_seal SET {column} = {value} WHERE id = %s", [seal.pk])
    code, out = run_tracking("verify")
    assert code == 1 and "SEAL" in out, out


def test_seal_time_edit_is_reported(sealed_rows):
    seal = Seal.objects.get()
    Seal.objects.filter(pk=seal.pk).update(created_at=seal.created_at - timedelta(days=1))
    code, out = run_tracking("verify")
    assert code == 1 and "seal signature invalid" in out


@pytest.mark.parametrize(
    "column,value",
    [
        ("reason", "'gdpr'"),
        ("deleted_by", "'someone-else'"),
        ("leaf", "'" + "d" * 64 + "'"),
        ("seq", "seq + 1"),
        ("key_id", "'deadbeef'"),
    ],
)
def test_every_tombstone_column_edit_voids_the_deletion(sealed_rows, column, value):
    victim = sealed_rows[2]
    delete_activities([victim.pk], reason="api", by="staff")
    assert run_tracking("verify")[0] == 0
    sql(f"UPDATE tracking_tombstone SET {column} = {value}")
    code, out = run_tracking("verify")
    assert code == 1 and "TOMBSTONE" in out and str(victim.pk) in out
