"""Deferred sealing (TRACKING_SEAL_INTERVAL > 0, the default) and the writer thread's
partition upkeep: the writing thread never seals; the process's writer thread seals in order
at most every interval (and when it stops), and `tracking verify` passes."""

from __future__ import annotations

import time
from datetime import datetime
from datetime import timezone as dt_timezone

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tracking.integrity.verify import verify
from tracking.models import Activity, Seal
from tracking.pipeline import housekeeping, writer
from tracking.pipeline.ingest import ingest
from tracking.storage import partitioning

UTC = dt_timezone.utc

PG = connection.vendor == "postgresql"


def _wait(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


@pytest.mark.django_db(transaction=True)
def test_sync_writes_leave_sealing_to_the_writer_thread_within_the_interval(settings, make_events):
    settings.TRACKING_SEAL_INTERVAL = 3600.0
    with CaptureQueriesContext(connection) as queries:
        assert ingest(make_events(3, "a")).stored == 3
    sql = " ".join(q["sql"] for q in queries.captured_queries)
    # The caller's connection took no chain lock and wrote no seal.
    assert "tracking_seal" not in sql and "advisory" not in sql
    # The first seal of a process is not delayed; later ones wait for the interval.
    assert _wait(lambda: not Activity.objects.filter(seq__isnull=True).exists())
    assert ingest(make_events(2, "b")).stored == 2
    time.sleep(0.6)  # a few writer rounds: still inside the interval
    assert Activity.objects.filter(seq__isnull=True).count() == 2
    writer.shutdown(10)  # stopping the writer seals what this process wrote
    assert not Activity.objects.filter(seq__isnull=True).exists()
    assert list(Seal.objects.order_by("first_seq").values_list("count", flat=True)) == [3, 2]
    report = verify()
    assert report.ok, report.problems


@pytest.mark.django_db(transaction=True)
def test_many_waiting_rows_are_sealed_before_the_interval(settings, make_events):
    settings.TRACKING_SEAL_INTERVAL = 3600.0
    settings.TRACKING_SEAL_BATCH_SIZE = 4
    assert ingest(make_events(1, "c")).stored == 1
    assert _wait(lambda: not Activity.objects.filter(seq__isnull=True).exists())
    assert ingest(make_events(5, "d")).stored == 5  # >= SEAL_BATCH_SIZE rows: due now
    assert _wait(lambda: not Activity.objects.filter(seq__isnull=True).exists())
    # counted after the seal's commit: give the thread a moment
    assert _wait(lambda: writer.stats()["sealed"] == 6)


@pytest.mark.django_db(transaction=True)
def test_async_events_are_sealed_by_the_writer_that_stored_them(settings, make_events):
    settings.TRACKING_SEAL_INTERVAL = 3600.0
    for e in make_events(4, "e"):
        writer.submit(e)
    assert writer.flush(10)
    assert _wait(lambda: Activity.objects.filter(seq__isnull=False).count() == 4)
    assert verify().ok


@pytest.mark.django_db(transaction=True)
def test_failed_seal_is_counted_logged_and_retried(settings, monkeypatch, caplog, make_events):
    from tracking.integrity import sealing

    settings.TRACKING_SEAL_INTERVAL = 0.2
    real = sealing.seal_pending
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("database hiccup")
        return real(*args, **kwargs)

    monkeypatch.setattr(sealing, "seal_pending", flaky)
    assert ingest(make_events(2, "f")).stored == 2
    assert _wait(lambda: not Activity.objects.filter(seq__isnull=True).exists())
    assert writer.stats()["seal_failures"] == 1  # counted before the retry that sealed
    assert "sealing committed activities failed" in caplog.text


@pytest.mark.django_db
def test_writer_checks_partitions_at_start_then_at_most_hourly(monkeypatch):
    calls = []
    monkeypatch.setattr(partitioning, "ensure_partitions", lambda **kw: calls.append(kw) or [])
    w = writer.Writer()
    job = w.job(housekeeping.Partitions)
    job.run(w, stopping=False)
    job.run(w, stopping=False)
    assert calls == [{"refresh": True}]
    job.last -= housekeeping.PARTITION_CHECK_INTERVAL
    job.run(w, stopping=False)
    assert len(calls) == 2


@pytest.mark.django_db
def test_writer_creates_next_months_partition_when_it_is_missing():
    w = writer.Writer()
    next_month = partitioning.partition_name(
        partitioning.add_months(partitioning.month_start(datetime.now(UTC)), 1)
    )
    if PG:
        assert partitioning.is_partitioned()
        with connection.cursor() as cur:
            cur.execute(f'ALTER TABLE tracking_activity DETACH PARTITION "{next_month}"')
            cur.execute(f'DROP TABLE "{next_month}"')
    w.job(housekeeping.Partitions).run(w, stopping=False)
    names = {p.name for p in partitioning.list_partitions()}
    assert (next_month in names) is PG  # SQLite: nothing to do, nothing created
    assert w.counters["partition_failures"] == 0


def test_periodic_seal_task_also_keeps_partitions(monkeypatch):
    from tracking.integrity import sealing
    from tracking.storage import tasks as tasks_periodic

    calls = []
    monkeypatch.setattr(partitioning, "ensure_partitions", lambda **kw: calls.append("p") or [])
    monkeypatch.setattr(sealing, "seal_pending", lambda **kw: calls.append("s") or 0)
    assert tasks_periodic.seal() == 0
    assert calls == ["p", "s"]


@pytest.mark.django_db
def test_a_writer_leaves_the_rows_of_another_process_to_it_for_a_grace(
    monkeypatch, make_events, make_event
):
    # Each process keeps the leaves of the rows it wrote; reading another's rows back to
    # verify and hash them cost more than writing them.
    import uuid
    from datetime import timedelta

    from tracking.integrity import sealing

    sealing.written.clear()
    ours, theirs = make_events(3, "own"), make_events(2, "other")
    orphan = make_event(timestamp=datetime.now(UTC) - timedelta(seconds=120))
    assert ingest([*ours, *theirs, orphan]).stored == 6
    sealing.written.forget(uuid.UUID(str(e.id)) for e in [*theirs, orphan])
    read_back = []
    real = sealing._read_leaves
    monkeypatch.setattr(
        sealing, "_read_leaves", lambda ids, skip: read_back.extend(ids) or real(ids, skip)
    )
    assert sealing.seal_pending(wait=True, others_grace=60.0) == 4
    # The orphan is older than the grace (its writer died or is far behind): sealed here.
    assert read_back == [uuid.UUID(str(orphan.id))]
    unsealed = set(Activity.objects.filter(seq__isnull=True).values_list("endpoint", flat=True))
    assert unsealed == {e.endpoint for e in theirs}
    # Operators' sealing (`tracking seal`, the periodic task) takes every row.
    assert sealing.seal_pending(wait=True) == 2
    assert not Activity.objects.filter(seq__isnull=True).exists()
    report = verify()
    assert report.ok, report.problems


@pytest.mark.django_db
def test_the_writer_seals_with_a_grace_of_at_least_twice_its_interval(settings, monkeypatch):
    from tracking.integrity import sealing

    calls = []
    monkeypatch.setattr(sealing, "seal_pending", lambda **kw: calls.append(kw) or 0)
    w = writer.Writer()
    for interval, grace in ((5.0, housekeeping.OTHERS_GRACE), (100.0, 200.0)):
        settings.TRACKING_SEAL_INTERVAL = interval
        job = w.job(housekeeping.Sealing)
        job.wanted = True  # as soon() sets it, without starting this writer's thread
        job.run(w, stopping=True)
        assert calls.pop()["others_grace"] == grace
