import hashlib
import uuid
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

import pytest
from django.test import override_settings

from tracking.integrity import macs as integrity
from tracking.integrity.sealing import GENESIS, chain_hash, delete_activities, seal_pending
from tracking.integrity.verify import verify
from tracking.models import Activity, Finding, Seal, Tombstone
from tracking.testing.factories import make_activities, make_activity

from .integrity_helpers import db_id, sql

UTC = dt_timezone.utc

pytestmark = pytest.mark.django_db


def test_seal_pending_assigns_consecutive_seq_in_time_order_and_links_seals():
    make_activities(7)
    with override_settings(TRACKING_SEAL_BATCH_SIZE=3):
        assert seal_pending() == 7
    rows = list(Activity.objects.order_by("seq"))
    assert [r.seq for r in rows] == list(range(1, 8))
    assert [r.timestamp for r in rows] == sorted(r.timestamp for r in rows)
    seals = list(Seal.objects.order_by("last_seq"))
    assert [(s.first_seq, s.last_seq, s.count) for s in seals] == [(1, 3, 3), (4, 6, 3), (7, 7, 1)]
    prev = GENESIS
    for seal in seals:
        assert seal.prev_hash == prev
        lines = seal.leaves.split("\n")
        assert len(lines) == seal.count
        assert seal.digest == hashlib.sha256(seal.leaves.encode()).hexdigest()
        assert seal.chain_hash == chain_hash(
            prev, seal.digest, seal.first_seq, seal.last_seq, seal.count
        )
        assert seal.key_id == integrity.signing_key()[0]
        prev = seal.chain_hash
    by_seq = {r.seq: r for r in rows}
    first_line = seals[0].leaves.split("\n")[0]
    assert first_line == f"{by_seq[1].id}:{integrity.leaf_hash(by_seq[1])}"
    # Nothing left: a second run seals nothing and adds no seal.
    assert seal_pending() == 0
    assert Seal.objects.count() == 3
    assert verify().ok


def test_seal_pending_respects_limit_and_continues_the_chain():
    make_activities(5)
    assert seal_pending(limit=2) == 2
    assert Activity.objects.filter(seq__isnull=True).count() == 3
    make_activities(2)
    assert seal_pending() == 5
    assert sorted(Activity.objects.values_list("seq", flat=True)) == list(range(1, 8))
    assert verify().ok


def test_row_with_invalid_mac_is_not_sealed_and_others_are():
    good = make_activities(3)
    bad = make_activity(city="Forged")
    sql("UPDATE tracking_activity SET city = %s WHERE id = %s", ["Elsewhere", db_id(bad.pk)])
    assert seal_pending() == 3
    assert Activity.objects.get(pk=bad.pk).seq is None
    assert set(Activity.objects.filter(seq__isnull=False).values_list("id", flat=True)) == {
        r.pk for r in good
    }
    report = verify()
    assert report.ids() == {str(bad.pk)}


def test_row_without_mac_is_refused_by_the_sealer():
    row = make_activity()
    sql("UPDATE tracking_activity SET mac = '' WHERE id = %s", [db_id(row.pk)])
    assert seal_pending() == 0
    assert not Seal.objects.exists()


def test_many_invalid_rows_do_not_starve_the_sealer():
    bad = make_activities(4, city="X")
    for b in bad:
        sql("UPDATE tracking_activity SET mac = 'k:00' WHERE id = %s", [db_id(b.pk)])
    make_activities(3, now=datetime.now(UTC) + timedelta(hours=1))
    with override_settings(TRACKING_SEAL_BATCH_SIZE=2):
        assert seal_pending() == 3


def test_geo_pending_rows_wait_for_their_grace_period_then_are_sealed():
    now = datetime.now(UTC)
    fresh = make_activity(geo_pending=True, timestamp=now)
    old = make_activity(geo_pending=True, timestamp=now - timedelta(hours=2))
    with override_settings(TRACKING_SEAL_GEO_PENDING_GRACE=600):
        assert seal_pending() == 1
    assert Activity.objects.get(pk=old.pk).seq == 1
    assert Activity.objects.get(pk=fresh.pk).seq is None
    assert seal_pending(include_geo_pending=True) == 1


def test_delete_activities_writes_signed_tombstones_and_verifies():
    rows = make_activities(4)
    seal_pending()
    first_seq = Activity.objects.get(pk=rows[0].pk).seq
    unsealed = make_activity()
    Finding.objects.create(
        activity_id=rows[0].pk,
        timestamp=rows[0].timestamp,
        detector="x",
        tag="t",
        score=1.0,
        reason="r",
    )
    n = delete_activities(
        [rows[0].pk, unsealed.pk, "00000000-0000-0000-0000-000000000000"], reason="api", by="alice"
    )
    assert n == 2
    assert not Activity.objects.filter(pk__in=[rows[0].pk, unsealed.pk]).exists()
    assert not Finding.objects.filter(activity_id=rows[0].pk).exists()
    t = Tombstone.objects.get(activity_id=rows[0].pk)
    assert (t.reason, t.deleted_by) == ("api", "alice")
    assert t.seq == first_seq and t.activity_timestamp == rows[0].timestamp
    assert t.leaf and t.mac.startswith(t.key_id + ":")
    assert Tombstone.objects.get(activity_id=unsealed.pk).seq is None
    report = verify()
    assert report.ok, report.problems
    assert report.deleted_ok == 1


def test_delete_activities_with_no_ids_is_a_no_op():
    assert delete_activities([], reason="api") == 0
    assert not Tombstone.objects.exists()


def test_old_seals_verify_after_seal_key_rotation_while_the_old_key_is_listed():
    make_activities(3)
    seal_pending()
    with override_settings(
        TRACKING_SEAL_KEYS=["new-seal-key", "dGVzdHMtb25seS1zZWFsLWtleS0wMTIzNDU2Nzg5YWJj"]
    ):
        make_activities(2)
        seal_pending()
        assert Seal.objects.order_by("-last_seq").first().key_id == integrity.signing_key()[0]
        assert verify().ok
    with override_settings(TRACKING_SEAL_KEYS=["new-seal-key"]):
        report = verify()
        assert not report.ok
        assert any("not in TRACKING_SEAL_KEYS" in p.message for p in report.problems)


@pytest.mark.django_db(transaction=True)
def test_concurrent_sealers_never_assign_a_seq_twice():
    import threading

    from django.db import connection as main_connection
    from django.db import connections

    make_activities(60)
    errors = []

    def run():
        try:
            seal_pending()
        except Exception as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(3)]
    with override_settings(TRACKING_SEAL_BATCH_SIZE=7):
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert not errors, errors
    main_connection.close()
    seqs = sorted(Activity.objects.values_list("seq", flat=True))
    assert seqs == list(range(1, 61))
    report = verify()
    assert report.ok, report.problems
    assert report.seals == Seal.objects.count() >= 9


def test_each_seal_logs_its_chain_head_as_an_external_anchor(caplog):
    import logging

    make_activities(2)
    with caplog.at_level(logging.INFO, logger="tracking.sealing"):
        seal_pending()
    head = Seal.objects.get().chain_hash
    assert any(f"chain head {head}" in r.getMessage() for r in caplog.records)


@pytest.mark.django_db(transaction=True)
def test_seal_on_write_does_not_wait_for_another_sealer():
    """PostgreSQL: while another process holds the chain lock, the writer's seal call returns
    at once (the holder or the next write seals the rows); operators' calls wait. SQLite
    serialises writers by itself, so there both calls simply seal."""
    import threading

    from django.db import connection, connections, transaction

    from tracking.integrity.sealing import lock_chain

    make_activities(3)
    if connection.vendor != "postgresql":
        assert seal_pending() == 3
        return
    held, release = threading.Event(), threading.Event()

    def holder():
        try:
            with transaction.atomic():
                lock_chain()
                held.set()
                release.wait(10)
        finally:
            connections.close_all()

    t = threading.Thread(target=holder)
    t.start()
    assert held.wait(10)
    try:
        assert seal_pending() == 0  # did not block behind the holder
        assert Activity.objects.filter(seq__isnull=True).count() == 3
    finally:
        release.set()
        t.join(10)
    assert seal_pending(wait=True) == 3
    assert verify().ok


def _written_events(n: int, **kw):
    from tracking.events import Event
    from tracking.pipeline.ingest import ingest

    now = datetime.now(UTC) - timedelta(hours=1)
    events = [
        Event(
            type="API",
            timestamp=now + timedelta(seconds=i),
            username=f"u{i}",
            ip_address="203.0.113.9",
            endpoint="/api/items/",
            method="GET",
            status=200,
            headers={"Accept": "text/html"},
            params={"page": i},
            **kw,
        )
        for i in range(n)
    ]
    # Sealing after commit does not run inside the test's transaction: the rows wait.
    assert ingest(events).stored == n
    assert Activity.objects.filter(seq__isnull=True).count() >= n
    return events


def test_rows_this_process_wrote_are_sealed_without_reading_them_back(monkeypatch):
    from tracking.integrity import sealing

    events = _written_events(5)

    def read_back(ids, skip):
        raise AssertionError(f"read back {len(ids)} rows")

    monkeypatch.setattr(sealing, "_read_leaves", read_back)
    assert seal_pending() == 5
    assert not {uuid.UUID(e.id) for e in events} & set(sealing.written.leaves)  # sealed: forgotten
    assert verify().ok


def test_content_altered_before_sealing_is_sealed_as_written_and_reported():
    events = _written_events(3)
    sql(
        "UPDATE tracking_activity SET city = %s WHERE id = %s",
        ["Elsewhere", db_id(uuid.UUID(events[1].id))],
    )
    assert seal_pending() == 3
    assert verify().ids() == {events[1].id}


def test_rows_the_cache_cannot_vouch_for_are_read_back(monkeypatch):
    from tracking.integrity import sealing

    events = _written_events(4)
    # Another process's rows (not in this process's cache) and a row re-MACed after new
    # content (as re-enrichment does) are read back and hashed as stored.
    sealing.written.forget([uuid.UUID(events[0].id)])
    row = Activity.objects.get(pk=events[1].id)
    row.city = "Lyon"
    row.mac = integrity.row_mac(row)
    sql(
        "UPDATE tracking_activity SET city = %s, mac = %s WHERE id = %s",
        [row.city, row.mac, db_id(row.pk)],
    )
    read = []
    real = sealing._read_leaves
    monkeypatch.setattr(
        sealing, "_read_leaves", lambda ids, skip: read.extend(ids) or real(ids, skip)
    )
    assert seal_pending() == 4
    assert sorted(map(str, read)) == sorted([events[0].id, events[1].id])
    assert verify().ok


def test_a_process_that_does_not_seal_keeps_no_leaves():
    from tracking.integrity import sealing

    with override_settings(TRACKING_SEAL_ON_WRITE=False):
        events = _written_events(2)
    assert not {uuid.UUID(e.id) for e in events} & set(sealing.written.leaves)


def test_written_leaves_are_bounded():
    from tracking.integrity.sealing import _WrittenLeaves

    cache = _WrittenLeaves(limit=3)
    ids = [uuid.uuid4() for _ in range(5)]
    cache.add((i, "k:mac", "leaf") for i in ids)
    assert list(cache.leaves) == ids[2:]
    assert cache.take([(ids[4], None, "k:mac"), (ids[3], None, "k:other")]) == {ids[4]: "leaf"}


def test_numbering_a_row_that_went_away_seals_nothing():
    from django.db import DatabaseError

    from tracking.integrity.sealing import _set_seq

    row = make_activity()
    with pytest.raises(DatabaseError):
        _set_seq([(row.pk, row.timestamp, 1), (uuid.uuid4(), row.timestamp, 2)])


def test_sealing_does_not_chase_rows_committed_while_it_runs(monkeypatch):
    """A steady stream of writes must not keep the sealer sealing one new row per chunk:
    rows committed during a round wait for the next one."""
    from tracking.integrity import sealing

    make_activities(3)
    real = sealing._seal_chunk
    chunks = []

    def chunk_then_write(*args, **kwargs):
        outcome = real(*args, **kwargs)
        chunks.append(outcome)
        make_activity()  # committed by another request meanwhile
        return outcome

    monkeypatch.setattr(sealing, "_seal_chunk", chunk_then_write)
    with override_settings(TRACKING_SEAL_BATCH_SIZE=2):
        # Full chunks go on (the backlog), the first short one ends the round; before, every
        # chunk found the row written meanwhile and the round never ended.
        assert seal_pending() == 5
    assert chunks == [(2, 0), (2, 0), (1, 0)]
    assert Activity.objects.filter(seq__isnull=True).count() == 1
    assert verify().ok


def test_rows_a_busy_chain_lock_kept_from_sealing_at_once_are_sealed_by_the_writer(
    monkeypatch, django_capture_on_commit_callbacks
):
    """TRACKING_SEAL_INTERVAL = 0: the committing thread only tries the chain lock. When
    another process holds it, that sealer may have read the unsealed rows before these were
    committed, so this process's writer seals them next (waiting for the lock) instead of
    leaving the last rows of a burst for whichever write comes next."""
    from tracking.events import Event
    from tracking.integrity import sealing
    from tracking.pipeline import housekeeping, writer
    from tracking.pipeline.ingest import ingest

    tries = []
    monkeypatch.setattr(sealing, "seal_pending", lambda **kw: tries.append(kw) or 0)
    with override_settings(TRACKING_SEAL_INTERVAL=0, TRACKING_SEAL_ON_WRITE=True):
        w = writer.get_writer()
        job = w.job(housekeeping.Sealing)
        # The batch step's after-commit hook runs rows_committed; the lock was busy.
        with django_capture_on_commit_callbacks(execute=True):
            ingest([Event(type="API", endpoint=f"/busy/{i}/") for i in range(3)], source="t")
        assert tries == [{}] and job.wanted
        monkeypatch.undo()
        job.run(w, stopping=False)
    assert Activity.objects.filter(endpoint__startswith="/busy/", seq__isnull=True).count() == 0
    assert verify().ok


def test_rows_sealed_at_once_are_not_handed_to_the_writer(django_capture_on_commit_callbacks):
    from tracking.events import Event
    from tracking.pipeline import housekeeping, writer
    from tracking.pipeline.ingest import ingest

    with override_settings(TRACKING_SEAL_INTERVAL=0, TRACKING_SEAL_ON_WRITE=True):
        w = writer.get_writer()
        job = w.job(housekeeping.Sealing)
        with django_capture_on_commit_callbacks(execute=True):
            ingest([Event(type="API", endpoint=f"/free/{i}/") for i in range(2)], source="t")
        assert not job.wanted
    assert Activity.objects.filter(seq__isnull=True).count() == 0


# --- sealed as they are inserted (a writer-sized batch) ------------------------------------


def _batch(n: int, *, start: datetime | None = None, **kw):
    from tracking.events import Event

    now = start or datetime.now(UTC) - timedelta(hours=1)
    return [
        Event(
            type="API",
            timestamp=now + timedelta(seconds=i),
            username=f"u{i % 5}",
            ip_address="203.0.113.9",
            endpoint=f"/api/items/{i}",
            method="GET",
            status=200,
            headers={"Accept": "text/html", "Authorization": "Bearer x"},
            params={"page": i},
            **kw,
        )
        for i in range(n)
    ]


def test_a_writer_sized_batch_is_sealed_as_it_is_inserted(monkeypatch):
    from tracking.integrity import sealing
    from tracking.pipeline import ingest as ingest_module

    n = ingest_module.SEAL_ON_INSERT_ROWS
    committed = []
    monkeypatch.setattr(ingest_module, "_announce_after_commit", committed.append)
    numbered = sealing._set_seq
    monkeypatch.setattr(sealing, "_set_seq", lambda rows: pytest.fail("rows numbered by UPDATE"))
    result = ingest_module.ingest(_batch(n + 5), source="writer")
    assert result.stored == n + 5 and result.sealed == n + 5
    rows = list(Activity.objects.order_by("seq"))
    assert [r.seq for r in rows] == list(range(1, n + 6))
    assert [r.timestamp for r in rows] == sorted(r.timestamp for r in rows)
    seal = Seal.objects.get()
    assert (seal.first_seq, seal.last_seq, seal.count, seal.prev_hash) == (1, n + 5, n + 5, GENESIS)
    assert seal.leaves.split("\n")[0] == f"{rows[0].id}:{integrity.leaf_hash(rows[0])}"
    assert committed == []  # nothing left for the after-commit sealer
    assert not set(sealing.written.leaves) & {r.id for r in rows}
    assert seal_pending(wait=True) == 0
    # The next batch continues the chain; a small one is left to the interval sealer.
    more = ingest_module.ingest(_batch(n, start=datetime.now(UTC) - timedelta(minutes=5)))
    assert more.sealed == n
    small = ingest_module.ingest(_batch(3, start=datetime.now(UTC) - timedelta(minutes=1)))
    assert small.sealed == 0 and committed == [3]
    assert Activity.objects.filter(seq__isnull=True).count() == 3
    monkeypatch.setattr(sealing, "_set_seq", numbered)
    assert seal_pending(wait=True) == 3
    assert sorted(Activity.objects.values_list("seq", flat=True)) == list(range(1, 2 * n + 9))
    assert verify().ok


def test_a_request_s_own_batch_and_rows_owed_geolocation_are_left_to_the_sealer():
    from tracking.pipeline import ingest as ingest_module

    n = ingest_module.SEAL_ON_INSERT_ROWS
    assert ingest_module.ingest(_batch(n), source="sync").sealed == 0
    assert Activity.objects.filter(seq__isnull=True).count() == n
    assert seal_pending(wait=True) == n
    events = _batch(n, start=datetime.now(UTC) - timedelta(minutes=2))
    owed = {e.id for e in events[:4]}
    real = ingest_module.build_activity

    def build(event):
        act = real(event)
        if event.id in owed:
            act.geo_pending = True
        return act

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ingest_module, "build_activity", build)
        result = ingest_module.ingest(events, source="writer")
    assert result.stored == n and result.sealed == n - 4
    unsealed = {
        str(i) for i in Activity.objects.filter(seq__isnull=True).values_list("id", flat=True)
    }
    assert unsealed == owed
    assert seal_pending(wait=True, include_geo_pending=True) == 4
    assert verify().ok


def test_a_batch_that_failed_leaves_no_number_taken_and_no_seal(monkeypatch):
    from tracking.pipeline import ingest as ingest_module
    from tracking.storage import copyinsert

    n = ingest_module.SEAL_ON_INSERT_ROWS
    real = copyinsert.insert
    calls = []

    def insert(model, objs):
        calls.append(len(objs))
        if len(calls) == 1:
            raise ValueError("the batch insert failed")
        return real(model, objs)

    monkeypatch.setattr(copyinsert, "insert", insert)
    result = ingest_module.ingest(_batch(n), source="writer")
    # Retried one by one: each a batch of one, left to the sealer, numbered from 1.
    assert result.stored == n and result.sealed == 0 and not Seal.objects.exists()
    assert seal_pending(wait=True) == n
    assert sorted(Activity.objects.values_list("seq", flat=True)) == list(range(1, n + 1))
    assert verify().ok


def test_tampering_with_a_row_sealed_as_it_was_inserted_is_reported():
    from tracking.pipeline import ingest as ingest_module

    events = _batch(ingest_module.SEAL_ON_INSERT_ROWS)
    assert ingest_module.ingest(events, source="celery").sealed == len(events)
    sql(
        "UPDATE tracking_activity SET endpoint = %s WHERE id = %s",
        ["/elsewhere", db_id(uuid.UUID(events[7].id))],
    )
    sql("DELETE FROM tracking_activity WHERE id = %s", [db_id(uuid.UUID(events[9].id))])
    report = verify()
    assert not report.ok and report.ids() == {events[7].id, events[9].id}
