"""COPY inserts (PostgreSQL, writer-sized batches) store exactly what bulk_create stores."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

import pytest
from django.db import IntegrityError, connection, transaction

from tracking.events import Event
from tracking.integrity.sealing import seal_pending
from tracking.integrity.verify import verify
from tracking.models import Activity, Finding
from tracking.pipeline.ingest import ingest
from tracking.storage import copyinsert

UTC = dt_timezone.utc

PG = connection.vendor == "postgresql"
N = copyinsert.MIN_ROWS + 10


def _events(n: int) -> list[Event]:
    now = datetime.now(UTC)
    return [
        Event(
            type="AUTH" if i % 3 else "API",
            timestamp=now - timedelta(seconds=n - i),
            username=f"user{i % 7}",
            ip_address=f"81.2.69.{i % 250 + 1}",
            user_agent="Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/124.0 Safari/537.36",
            endpoint="/accounts/login/",
            method="POST",
            status=401 if i % 5 == 0 else 200,
            duration=10.0 + i,
            headers={"Accept": "*/*", "Authorization": "Bearer secret"},
            params={"query": {"page": str(i)}, "body": {"password": "hunter2", "n": i}},
        )
        for i in range(n)
    ]


@pytest.mark.django_db
def test_copy_path_rows_decrypt_verify_and_carry_their_findings(monkeypatch):
    used = []
    real = copyinsert._use_copy
    monkeypatch.setattr(
        copyinsert, "_use_copy", lambda c, objs: used.append(real(c, objs)) or used[-1]
    )
    events = _events(N)
    events[4].outcome = "failure"  # a form error answered 200
    result = ingest(events, assume_new=True)
    assert result.stored == N and result.rejected == 0
    assert used[0] is PG  # the activities of a big batch went through COPY on PostgreSQL
    outcomes = dict(Activity.objects.values_list("id", "outcome"))
    assert [outcomes[uuid.UUID(events[i].id)] for i in (0, 3, 4)] == [
        "failure",
        "success",
        "failure",
    ]
    row = Activity.objects.get(id=events[3].id)
    assert row.params["body"] == {"password": "[REDACTED]", "n": 3}
    assert row.headers["Authorization"] == "[REDACTED]"
    assert row.duration == 13.0 and row.status == 200 and row.username == "user3"
    assert row.timestamp == events[3].timestamp
    # A writer-sized batch is sealed as it is inserted (the seq went through COPY too).
    assert result.sealed == N and not Activity.objects.filter(seq__isnull=True).exists()
    assert seal_pending(wait=True) == 0
    report = verify()
    assert report.ok, report.problems  # every row MAC matches its stored content


def _three_stored_activities() -> list[Activity]:
    events = _events(3)
    assert ingest(events, assume_new=True).stored == 3
    return list(Activity.objects.filter(id__in=[e.id for e in events]))


def _findings(acts: list[Activity], n: int, detector: str, **evidence) -> list[Finding]:
    return [
        Finding(
            activity=acts[i % len(acts)],
            timestamp=acts[i % len(acts)].timestamp,
            detector=detector,
            tag="t",
            score=0.25,
            reason=f"r{i}",
            evidence={"i": i, **evidence},
        )
        for i in range(n)
    ]


@pytest.mark.django_db
def test_findings_by_copy_get_database_keys_and_keep_their_activity():
    acts = _three_stored_activities()
    findings = _findings(acts, N, "test", nested={"x": [1, 2]})
    copyinsert.insert(Finding, findings)
    stored = list(Finding.objects.filter(detector="test").order_by("id"))
    assert len(stored) == N and len({f.pk for f in stored}) == N
    assert {f.activity_id for f in stored} == {a.id for a in acts}
    assert sorted(f.evidence["i"] for f in stored) == list(range(N))
    assert stored[0].evidence["nested"] == {"x": [1, 2]} and stored[0].severity == "low"


@pytest.mark.django_db
def test_copy_reports_duplicates_as_integrity_errors_and_ingest_counts_them():
    events = _events(N)
    assert ingest(events, assume_new=True).stored == N
    rows = list(Activity.objects.filter(id__in=[e.id for e in events]))
    for r in rows:
        r._state.adding = True
    with pytest.raises(IntegrityError), transaction.atomic():
        copyinsert.insert(Activity, rows)
    again = ingest(events[:5] + _events(N)[5:], assume_new=True)
    assert (again.stored, again.duplicates, again.rejected) == (N - 5, 5, 0)


@pytest.mark.django_db
@pytest.mark.django_db
def test_small_batches_use_one_prepared_insert_and_store_what_bulk_create_stores(monkeypatch):
    from django.db.models.query import QuerySet
    from django.test.utils import CaptureQueriesContext

    from tracking.pipeline.rows import build_activity

    calls = []
    real = QuerySet.bulk_create
    monkeypatch.setattr(
        QuerySet,
        "bulk_create",
        lambda self, objs, **kw: calls.append(len(objs)) or real(self, objs),
    )
    events = _events(3)
    fast = [build_activity(e) for e in events]
    with CaptureQueriesContext(connection) as ctx:
        copyinsert.insert(Activity, fast)
    assert calls == []  # no ORM statement compiled
    inserts = [q["sql"] for q in ctx.captured_queries if q["sql"].startswith("INSERT")]
    assert len(inserts) == 1 or all("tracking_activity" in q for q in inserts)
    assert all(not a._state.adding for a in fast)
    # The same events through bulk_create (new ids) store the same values.
    slow = [build_activity(e) for e in events]
    for a in slow:
        a.id = uuid.uuid4()
    Activity.objects.bulk_create(slow)
    skip = {"id", "headers", "params"}  # new ids; ciphertexts differ by nonce (and id as AAD)
    names = [f.attname for f in Activity._meta.concrete_fields if f.attname not in skip]
    for a, b in zip(fast, slow, strict=True):
        ra, rb = (Activity.objects.values(*names).get(pk=x.pk) for x in (a, b))
        assert ra == rb
        assert Activity.objects.get(pk=a.pk).params == Activity.objects.get(pk=b.pk).params
    copyinsert.insert(Activity, [])


@pytest.mark.django_db
def test_small_finding_batches_keep_bulk_create_for_their_keys():
    from tracking.pipeline.rows import build_activity

    act = build_activity(_events(1)[0])
    copyinsert.insert(Activity, [act])
    finding = Finding(
        activity=act, timestamp=act.timestamp, detector="d", tag="t", score=0.5, reason="r"
    )
    copyinsert.insert(Finding, [finding])
    assert finding.pk is not None and Finding.objects.get(pk=finding.pk).tag == "t"


@pytest.mark.django_db
def test_small_batch_duplicate_is_an_integrity_error():
    from tracking.pipeline.rows import build_activity

    act = build_activity(_events(1)[0])
    copyinsert.insert(Activity, [act])
    again = build_activity(_events(1)[0])
    # The same row again (on PostgreSQL the key is (id, timestamp): the partition key is in it).
    again.id, again.timestamp = act.id, act.timestamp
    with pytest.raises(IntegrityError), transaction.atomic():
        copyinsert.insert(Activity, [again])


@pytest.mark.django_db
def test_copy_rows_are_what_each_field_prepares():
    """The shortcuts of ``_row`` (plain values, NULLs, ciphertext) give exactly what
    ``pre_save`` + ``get_db_prep_save`` give, for every field of activities and findings,
    with and without optional values."""
    from tracking.pipeline.rows import build_activity

    full = build_activity(_events(1)[0])
    bare = build_activity(Event(type="API"))
    bare.asn = bare.latitude = bare.status = None
    for model, objs in ((Activity, [full, bare]), (Finding, [])):
        if model is Finding:
            objs = [Finding(activity=full, detector="d", tag="t", score=0.5, reason="r")]
        fields = copyinsert._copy_fields(model, objs)
        plan = copyinsert._plan(fields, connection)
        for obj in objs:
            for f in fields:  # encrypt once: each encryption draws a new nonce
                if f.attname in ("headers", "params"):
                    obj.__dict__[f.attname] = f.pre_save(obj, True)
            fast = copyinsert._row(plan, obj, connection)
            slow = [f.get_db_prep_save(f.pre_save(obj, True), connection) for f in fields]
            assert [str(v) for v in fast] == [str(v) for v in slow]
            for a, b in zip(fast, slow, strict=True):
                # PostgreSQL's integer wrappers (Int4, Int8) are ints written the same way.
                assert isinstance(b, type(a)) or isinstance(a, type(b)), (a, b)


def test_shortcuts_leave_naive_datetimes_and_odd_values_to_django():
    """An aware datetime and a known address take the shortcut; a naive datetime still
    goes through Django (which warns and makes it aware), on every backend."""
    import warnings
    from datetime import datetime

    from tracking.pipeline.rows import build_activity

    act = build_activity(_events(1)[0])
    fields = copyinsert._copy_fields(Activity, [act])
    plan = copyinsert._plan(fields, connection)
    ts = next(i for i, f in enumerate(fields) if f.name == "timestamp")
    ip = next(i for i, f in enumerate(fields) if f.name == "ip_address")
    for f in fields:
        if f.attname in ("headers", "params"):
            act.__dict__[f.attname] = f.pre_save(act, True)
    first = copyinsert._row(plan, act, connection)
    again = copyinsert._row(plan, act, connection)
    assert first[ip] == again[ip] == fields[ip].get_db_prep_save(act.ip_address, connection)
    act.timestamp = datetime(2026, 1, 2, 3, 4, 5)  # naive
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        row = copyinsert._row(plan, act, connection)
    assert any("naive datetime" in str(w.message) for w in caught)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert str(row[ts]) == str(fields[ts].get_db_prep_save(act.timestamp, connection))


@pytest.mark.django_db
def test_many_findings_of_a_small_batch_are_inserted_inside_its_pipeline():
    """A small batch is written in psycopg's pipeline mode, where COPY is not allowed: its
    findings go by INSERT even when there are more than ``MIN_ROWS`` of them (an attack in a
    quiet minute: a few events, many findings each)."""
    from tracking.pipeline import ingest as ingest_module

    findings = _findings(_three_stored_activities(), copyinsert.MIN_ROWS + 10, "burst")
    with transaction.atomic(), ingest_module._pipelined(3):
        copyinsert.insert(Finding, findings)
    assert Finding.objects.filter(detector="burst").count() == copyinsert.MIN_ROWS + 10


@pytest.mark.django_db
def test_small_finding_batches_get_their_keys_from_one_unnest_insert_on_postgresql(monkeypatch):
    from django.db.models.query import QuerySet

    from tracking.pipeline.rows import build_activity

    act = build_activity(_events(1)[0])
    copyinsert.insert(Activity, [act])

    def findings():
        return [
            Finding(
                activity=act,
                timestamp=act.timestamp,
                detector="d",
                tag=f"t{i}",
                score=0.25 * i,
                severity="high",
                reason="r'\\\"é",
                evidence={"i": i, "nested": {"x": [1, "two", None]}, "text": "é'\\\""},
                suppressed=i == 1,
            )
            for i in range(3)
        ]

    bulk = []
    real = QuerySet.bulk_create
    monkeypatch.setattr(
        QuerySet, "bulk_create", lambda self, objs, **kw: bulk.append(len(objs)) or real(self, objs)
    )
    fast = findings()
    copyinsert.insert(Finding, fast)
    assert bulk == ([] if connection.vendor == "postgresql" else [3])
    assert all(f.pk is not None and not f._state.adding for f in fast)
    assert [Finding.objects.get(pk=f.pk).tag for f in fast] == ["t0", "t1", "t2"]  # key order
    monkeypatch.undo()
    slow = findings()
    Finding.objects.bulk_create(slow)
    names = [f.attname for f in Finding._meta.concrete_fields if f.attname != "id"]
    for a, b in zip(fast, slow, strict=True):
        ra, rb = (Finding.objects.values(*names).get(pk=x.pk) for x in (a, b))
        assert ra == rb
