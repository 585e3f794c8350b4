"""Finding 3 (un-seal, delete, re-seal) and finding 4 (user_id outside the row MAC).

The attack: delete the newest seal, null ``seq`` on its rows, delete chosen rows, let
``tracking seal`` re-seal the rest. The chain is consistent in itself afterwards, so it is
caught by an anchor kept outside the database (``tracking doctor`` keeps one routinely) and,
while the rows wait, by the alarm for unsealed rows older than the head seal.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone

import pytest
from django.test import override_settings

from tracking.integrity import macs as integrity
from tracking.integrity.sealing import seal_pending
from tracking.models import Activity, Seal
from tracking.testing.factories import make_activities

from .integrity_helpers import db_id, run_tracking, sql

UTC = timezone.utc

pytestmark = pytest.mark.django_db


def _two_seals(n_old=4, n_new=4, old_age=timedelta(hours=2)):
    """Seal ``n_old`` rows recorded ``old_age`` ago, then ``n_new`` recent rows."""
    old = datetime.now(UTC) - old_age
    make_activities(n_old, now=old)
    seal_pending(wait=True)
    make_activities(n_new)
    seal_pending(wait=True)
    head = Seal.objects.order_by("-last_seq").first()
    assert Seal.objects.count() == 2
    return head


def _unseal_head_and_delete(head: Seal, victims: int = 1) -> list[str]:
    """The attacker's moves: drop the head seal, strip seq from its rows, delete some."""
    ids = list(
        Activity.objects.filter(seq__gte=head.first_seq)
        .order_by("seq")
        .values_list("id", flat=True)
    )
    sql("DELETE FROM tracking_seal WHERE id = %s", [head.pk])
    sql("UPDATE tracking_activity SET seq = NULL WHERE seq >= %s", [head.first_seq])
    gone = ids[:victims]
    for pk in gone:
        sql("DELETE FROM tracking_activity WHERE id = %s", [db_id(pk)])
    return [str(pk) for pk in gone]


def test_reseal_after_a_cut_tail_is_caught_by_the_anchor_doctor_keeps(tmp_path):
    anchor_file = tmp_path / "anchor.json"
    with override_settings(TRACKING_ANCHOR_FILE=str(anchor_file)):
        head = _two_seals()
        code, out = run_tracking("doctor")
        assert code == 0, out
        kept = json.loads(anchor_file.read_text())
        assert (kept["last_seq"], kept["chain_hash"]) == (head.last_seq, head.chain_hash)

        _unseal_head_and_delete(head)
        assert run_tracking("seal")[0] == 0  # the rest is re-sealed under a new head
        with override_settings(TRACKING_ANCHOR_FILE=None):
            assert run_tracking("verify")[0] == 0  # consistent in itself: hence the anchor
        code, out = run_tracking("doctor")
        assert code == 1 and "seals were removed or rewritten" in out, out
        # The file keeps the evidence: the alarm repeats, and verify compares with it.
        assert json.loads(anchor_file.read_text())["chain_hash"] == head.chain_hash
        assert run_tracking("doctor")[0] == 1
        code, out = run_tracking("verify")
        assert code == 1 and head.chain_hash in out
        code, out = run_tracking("verify", "--anchor-file", str(anchor_file))
        assert code == 1 and "not in the chain" in out


def test_doctor_advances_the_anchor_while_the_chain_only_grows(tmp_path):
    anchor_file = tmp_path / "sub" / "anchor.json"
    with override_settings(TRACKING_ANCHOR_FILE=str(anchor_file)):
        make_activities(3)
        seal_pending(wait=True)
        assert run_tracking("doctor")[0] == 0
        first = json.loads(anchor_file.read_text())["last_seq"]
        make_activities(2)
        seal_pending(wait=True)
        code, out = run_tracking("doctor")
        assert code == 0 and "now at seq" in out
        assert json.loads(anchor_file.read_text())["last_seq"] == first + 2
        assert run_tracking("verify")[0] == 0
        # The read-only health endpoint compares but never writes.
        from tracking.health import collect

        assert collect()["sealing"]["anchor"]["advanced_to"] is None


def test_a_corrupted_anchor_file_is_a_problem_not_a_pass(tmp_path):
    anchor_file = tmp_path / "anchor.json"
    anchor_file.write_text("{not json")
    with override_settings(TRACKING_ANCHOR_FILE=str(anchor_file)):
        make_activities(2)
        seal_pending(wait=True)
        code, out = run_tracking("doctor")
        assert code == 1 and "anchor file" in out
        assert run_tracking("verify")[0] == 2


@pytest.mark.parametrize("grace", [60, 300, 1800])
def test_unsealed_rows_older_than_the_head_are_an_alarm(grace, caplog):
    with override_settings(TRACKING_UNSEALED_BEHIND_HEAD_GRACE=grace):
        # The head seal holds rows recorded 2 h before it was made (a backlog sealed late).
        old = datetime.now(UTC) - timedelta(hours=2)
        make_activities(3)
        seal_pending(wait=True)
        make_activities(4, now=old)
        seal_pending(wait=True)
        head = Seal.objects.order_by("-last_seq").first()
        # Un-seal the newest seal and strip seq from its rows: they are 2 h older than the
        # seal that is now the head.
        _unseal_head_and_delete(head, victims=1)
        code, out = run_tracking("verify")
        assert code == 1 and "UNSEALED" in out and "still unsealed" in out, out
        from tracking.health import collect

        data = collect()
        assert data["sealing"]["unsealed_behind_head"] == 3
        assert not data["healthy"] and any("newest seal" in p for p in data["problems"])
        with caplog.at_level(logging.WARNING, logger="tracking.sealing"):
            seal_pending(wait=True)
        assert "before the chain head" in caplog.text


def test_recent_unsealed_rows_and_geo_pending_rows_are_no_alarm():
    make_activities(3)
    seal_pending(wait=True)
    make_activities(1)  # recorded within the grace
    make_activities(1, now=datetime.now(UTC) - timedelta(seconds=120), geo_pending=True)
    code, out = run_tracking("verify")
    assert code == 0, out
    from tracking.health import collect

    assert collect()["sealing"]["unsealed_behind_head"] == 0


# --- finding 4: user_id ---------------------------------------------------------------------


@pytest.fixture
def two_users(django_user_model):
    return (
        django_user_model.objects.create_user("alice", password="pw"),
        django_user_model.objects.create_user("bob", password="pw"),
    )


@pytest.mark.parametrize("sealed", [True, False])
def test_moving_a_row_to_another_user_is_reported(two_users, sealed):
    alice, bob = two_users
    make_activities(3, user=alice)
    if sealed:
        seal_pending(wait=True)
    victim = Activity.objects.order_by("timestamp").first()
    sql("UPDATE tracking_activity SET user_id = %s WHERE id = %s", [bob.pk, db_id(victim.pk)])
    code, out = run_tracking("verify")
    assert code == 1 and str(victim.pk) in out, out
    assert sum(str(a.pk) in out for a in Activity.objects.all()) == 1


def test_giving_an_anonymous_row_a_user_is_reported(two_users):
    make_activities(2)
    seal_pending(wait=True)
    victim = Activity.objects.first()
    sql(
        "UPDATE tracking_activity SET user_id = %s WHERE id = %s",
        [two_users[0].pk, db_id(victim.pk)],
    )
    code, out = run_tracking("verify")
    assert code == 1 and str(victim.pk) in out


def test_deleting_the_account_keeps_its_rows_verifiable(two_users):
    alice, _ = two_users
    make_activities(2, user=alice)
    seal_pending(wait=True)
    make_activities(1, user=alice)  # and one still unsealed
    alice.delete()
    assert Activity.objects.filter(user__isnull=True).count() == 3
    code, out = run_tracking("verify")
    assert code == 0, out
    assert seal_pending(wait=True) == 1


def test_rows_with_version_1_macs_still_verify_and_seal(two_users):
    alice, bob = two_users
    rows = make_activities(3, user=alice)
    for row in rows:
        mac = integrity.sign(integrity.canonical_bytes(row, 1), "row")
        Activity.objects.filter(pk=row.pk).update(mac=mac)
    assert seal_pending(wait=True) == 3
    make_activities(2, user=bob)
    seal_pending(wait=True)
    assert run_tracking("verify")[0] == 0
    macs = set(Activity.objects.values_list("mac", flat=True))
    assert sum(integrity.row_format(m) == 1 for m in macs) == 3
    assert sum(integrity.row_format(m) == 2 for m in macs) == 2
