"""Monthly partitioning of tracking_activity on PostgreSQL; a no-op on SQLite."""

from __future__ import annotations

import importlib
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import override_settings

from tracking.checks import check_partitioning
from tracking.models import Activity, Finding
from tracking.storage import partitioning
from tracking.testing.factories import make_activities, make_activity

UTC = dt_timezone.utc

# Every test runs on both backends and asserts what that backend must do: PostgreSQL
# partitions by month, SQLite keeps one plain table and every partition call is a no-op.
PG = connection.vendor == "postgresql"

NOW = datetime.now(UTC)
THIS_MONTH = partitioning.month_start(NOW)


@pytest.fixture(autouse=True)
def _fresh_cache():
    partitioning._clear_cache()
    yield
    partitioning._clear_cache()


def _where(activity_id) -> str:
    """The table that physically holds the row (a partition on PostgreSQL)."""
    if not PG:
        assert Activity.objects.filter(pk=activity_id).exists()
        return Activity._meta.db_table
    with connection.cursor() as cur:
        cur.execute(
            "SELECT tableoid::regclass::text FROM tracking_activity WHERE id = %s", [activity_id]
        )
        return cur.fetchone()[0]


def _finding(activity: Activity) -> Finding:
    return Finding.objects.create(
        activity_id=activity.pk,
        timestamp=activity.timestamp,
        detector="test",
        tag="t",
        score=0.5,
        reason="because",
    )


def _table_names() -> set[str]:
    with connection.cursor() as cur:
        return set(connection.introspection.table_names(cur))


# --- helpers (backend independent) ------------------------------------------------------------


def test_month_arithmetic():
    ts = datetime(2025, 12, 31, 23, 59, tzinfo=UTC)
    assert partitioning.month_start(ts) == datetime(2025, 12, 1, tzinfo=UTC)
    assert partitioning.add_months(datetime(2025, 12, 1, tzinfo=UTC), 1) == datetime(
        2026, 1, 1, tzinfo=UTC
    )
    assert partitioning.add_months(datetime(2026, 1, 1, tzinfo=UTC), -1) == datetime(
        2025, 12, 1, tzinfo=UTC
    )
    assert (
        partitioning.partition_name(datetime(2026, 3, 1, tzinfo=UTC))
        == "tracking_activity_p2026_03"
    )


def test_partition_bounds_are_written_as_checked_literals():
    # DDL takes no bound parameters under Django's server-side binding: the bounds are
    # inlined, and only aware datetimes are accepted.
    start = datetime(2026, 11, 1, tzinfo=UTC)
    end = partitioning.add_months(start, 1)
    assert partitioning._bound(start, end) == (
        "FROM ('2026-11-01T00:00:00+00:00') TO ('2026-12-01T00:00:00+00:00')"
    )
    with pytest.raises(ValueError, match="timezone-aware"):
        partitioning._bound(datetime(2026, 11, 1), end)
    with pytest.raises(ValueError, match="timezone-aware"):
        partitioning._bound(start, "2026-12-01') TO ('2027-01-01")


def test_partition_settings_checks():
    assert check_partitioning() == []
    with override_settings(TRACKING_PARTITION_MONTHS_AHEAD=-1):
        assert [e.id for e in check_partitioning()] == ["tracking.E120"]
    with override_settings(TRACKING_PARTITION_MONTHS_AHEAD="3"):
        assert [e.id for e in check_partitioning()] == ["tracking.E120"]
    with override_settings(TRACKING_PARTITIONING="yes"):
        assert [e.id for e in check_partitioning()] == ["tracking.E121"]


@pytest.mark.django_db
def test_negative_months_ahead_is_refused():
    with pytest.raises(ValueError):
        partitioning.ensure_partitions(-1)
    err = StringIO()
    if partitioning.is_partitioned():
        with pytest.raises(SystemExit) as exc:
            call_command("tracking", "partitions", "ensure", "--months-ahead", "-1", stderr=err)
        assert exc.value.code == 2
        assert "--months-ahead" in err.getvalue()


# --- SQLite: unchanged ------------------------------------------------------------------------


@pytest.mark.django_db
def test_sqlite_keeps_one_plain_table():
    if PG:
        # On PostgreSQL the plain-table path is the switched-off one: convert back, then check.
        with connection.schema_editor() as editor:
            importlib.import_module("tracking.migrations.0002_postgres_partitioning").backwards(
                None, editor
            )
        assert partitioning.unpartition_table(connection) is False  # already plain
        with override_settings(TRACKING_PARTITIONING=False):
            assert partitioning.partition_table(connection) is False
        assert partitioning.ensure_partitions(6, refresh=True) == []
        assert partitioning.list_partitions() == []
        return
    assert not partitioning.is_partitioned()
    assert not any(name.startswith("tracking_activity_p") for name in _table_names())
    assert partitioning.partition_table(connection) is False
    assert partitioning.unpartition_table(connection) is False
    assert partitioning.list_partitions() == []
    assert partitioning.ensure_partitions(6) == []
    old = make_activity(timestamp=NOW - timedelta(days=400))
    result = partitioning.drop_partitions_before(NOW)
    assert result.partitions == [] and result.rows == 0 and result.until is None
    assert partitioning.partitions_before(NOW) == []
    assert Activity.objects.filter(pk=old.pk).exists()  # nothing dropped: purge deletes rows


@pytest.mark.django_db
def test_sqlite_cli_says_nothing_to_do():
    out = StringIO()
    call_command("tracking", "partitions", "ensure", "--months-ahead", "2", stdout=out)
    if PG:
        assert "Nothing to do" not in out.getvalue() and "partition(s) created." in out.getvalue()
    else:
        assert "Nothing to do" in out.getvalue() and "sqlite" in out.getvalue()


# --- PostgreSQL ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_migration_partitioned_the_table_by_month():
    if not PG:
        assert not partitioning.is_partitioned() and partitioning.list_partitions() == []
        assert not any(name.startswith("tracking_activity_p") for name in _table_names())
        assert Activity._meta.pk.name == "id"
        return
    assert partitioning.is_partitioned()
    parts = partitioning.list_partitions()
    names = [p.name for p in parts]
    assert partitioning.DEFAULT_PARTITION in names
    for i in range(4):  # current month + TRACKING_PARTITION_MONTHS_AHEAD (3)
        assert partitioning.partition_name(partitioning.add_months(THIS_MONTH, i)) in names
    with connection.cursor() as cur:
        cur.execute(
            "SELECT pg_get_partkeydef('tracking_activity'::regclass), "
            "pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = 'tracking_activity'::regclass AND contype = 'p'"
        )
        keydef, pkdef = cur.fetchone()
    assert keydef == 'RANGE ("timestamp")'
    assert pkdef == 'PRIMARY KEY (id, "timestamp")'
    assert Activity._meta.pk.name == "id"  # Django's view is unchanged


@pytest.mark.django_db
def test_rows_route_to_their_month_and_orm_works():
    a = make_activity(timestamp=NOW)
    b = make_activity(timestamp=partitioning.add_months(THIS_MONTH, 2) + timedelta(days=3))
    ancient = make_activity(timestamp=datetime(2001, 5, 5, tzinfo=UTC))
    if PG:
        assert _where(a.pk) == partitioning.partition_name(THIS_MONTH)
        assert _where(b.pk) == partitioning.partition_name(partitioning.add_months(THIS_MONTH, 2))
        assert _where(ancient.pk) == partitioning.DEFAULT_PARTITION
    else:
        assert {_where(x.pk) for x in (a, b, ancient)} == {"tracking_activity"}
    # ORM by pk, update, encrypted fields (AAD names the parent table) and delete all work.
    got = Activity.objects.get(pk=a.pk)
    assert got.headers["Accept"] == "application/json"
    got.review_status = "dismissed"
    got.save()
    assert Activity.objects.get(pk=a.pk).review_status == "dismissed"
    # Moving a row across months moves it across partitions.
    Activity.objects.filter(pk=a.pk).update(timestamp=b.timestamp)
    assert _where(a.pk) == _where(b.pk)
    assert Activity.objects.get(pk=a.pk).timestamp == b.timestamp
    Activity.objects.filter(pk=ancient.pk).delete()
    assert not Activity.objects.filter(pk=ancient.pk).exists()


@pytest.mark.django_db
def test_ensure_creates_ahead_and_is_idempotent():
    future = partitioning.add_months(THIS_MONTH, 12)
    created = partitioning.ensure_partitions(2, now=future)
    if not PG:
        assert created == [] and partitioning.ensure_partitions(2, now=future) == []
        row = make_activity(timestamp=future + timedelta(days=1))
        assert _where(row.pk) == "tracking_activity"
        return
    assert created == [
        partitioning.partition_name(partitioning.add_months(future, i)) for i in range(3)
    ]
    assert partitioning.ensure_partitions(2, now=future) == []
    row = make_activity(timestamp=future + timedelta(days=1))
    assert _where(row.pk) == partitioning.partition_name(future)


@pytest.mark.django_db
def test_ensure_is_cached_per_month_until_refresh():
    assert partitioning.ensure_partitions(3) == []  # the migration made these
    if not PG:
        assert partitioning.ensure_partitions(3, refresh=True) == []
        assert not any(name.startswith("tracking_activity_p") for name in _table_names())
        return
    with connection.cursor() as cur:
        last = partitioning.partition_name(partitioning.add_months(THIS_MONTH, 3))
        cur.execute(f'ALTER TABLE tracking_activity DETACH PARTITION "{last}"')
        cur.execute(f'DROP TABLE "{last}"')
    assert partitioning.ensure_partitions(3) == []  # remembered: no database round trip
    assert partitioning.ensure_partitions(3, refresh=True) == [last]


@pytest.mark.django_db
def test_ensure_moves_rows_out_of_the_default_partition():
    old_month = datetime(2020, 2, 1, tzinfo=UTC)
    rows = make_activities(5, now=old_month + timedelta(days=10))
    keep = make_activity(timestamp=datetime(1999, 1, 1, tzinfo=UTC))
    if not PG:
        assert partitioning.ensure_partitions(0, refresh=True) == []
        assert Activity.objects.count() == 6  # nothing moved, nothing lost
        assert {_where(r.pk) for r in [*rows, keep]} == {"tracking_activity"}
        return
    assert {_where(r.pk) for r in rows} == {partitioning.DEFAULT_PARTITION}
    created = partitioning.ensure_partitions(0, refresh=True)
    assert partitioning.partition_name(old_month) in created
    assert partitioning.partition_name(datetime(1999, 1, 1, tzinfo=UTC)) in created
    assert {_where(r.pk) for r in rows} == {partitioning.partition_name(old_month)}
    assert _where(keep.pk) == "tracking_activity_p1999_01"
    assert Activity.objects.count() == 6
    with connection.cursor() as cur:
        cur.execute(f'SELECT count(*) FROM "{partitioning.DEFAULT_PARTITION}"')
        assert cur.fetchone()[0] == 0


@pytest.mark.django_db
def test_cli_ensure_and_list():
    if not PG:
        for action in ("ensure", "list"):
            out = StringIO()
            call_command("tracking", "partitions", action, stdout=out)
            assert "Nothing to do: the sqlite backend has no table partitioning" in out.getvalue()
        return
    out = StringIO()
    call_command("tracking", "partitions", "ensure", "--months-ahead", "5", stdout=out)
    text = out.getvalue()
    for i in (4, 5):
        assert (
            f"created {partitioning.partition_name(partitioning.add_months(THIS_MONTH, i))}" in text
        )
    assert "2 partition(s) created." in text
    out = StringIO()
    call_command("tracking", "partitions", "ensure", "--months-ahead", "5", stdout=out)
    assert "0 partition(s) created." in out.getvalue()
    out = StringIO()
    call_command("tracking", "partitions", "list", stdout=out)
    assert partitioning.DEFAULT_PARTITION in out.getvalue()
    assert f"{THIS_MONTH:%Y-%m-%d}" in out.getvalue()


@pytest.mark.django_db
def test_date_queries_touch_only_their_partitions():
    partitioning.ensure_partitions(0, now=datetime(2024, 1, 1, tzinfo=UTC))
    partitioning.ensure_partitions(0, now=datetime(2024, 2, 1, tzinfo=UTC))
    made = make_activities(3, now=datetime(2024, 1, 20, tzinfo=UTC))
    start, end = datetime(2024, 1, 5, tzinfo=UTC), datetime(2024, 1, 25, tzinfo=UTC)
    in_range = Activity.objects.filter(timestamp__gte=start, timestamp__lt=end)
    assert set(in_range.values_list("pk", flat=True)) == {a.pk for a in made}
    plan = in_range.explain()
    if not PG:
        # One table, read through the timestamp index rather than scanned.
        assert "tracking_activity_p" not in plan and "INDEX" in plan.upper()
        return
    assert "tracking_activity_p2024_01" in plan
    assert "tracking_activity_p2024_02" not in plan
    assert partitioning.partition_name(THIS_MONTH) not in plan
    assert partitioning.DEFAULT_PARTITION not in plan
    # An unbounded query still sees every partition.
    assert partitioning.DEFAULT_PARTITION in Activity.objects.all().explain()


@pytest.mark.django_db
def test_drop_partitions_before_drops_whole_months_only():
    jan, feb, mar = (datetime(2024, m, 1, tzinfo=UTC) for m in (1, 2, 3))
    for month in (jan, feb, mar):
        partitioning.ensure_partitions(0, now=month)
    in_jan = make_activities(4, now=jan + timedelta(days=5))
    in_feb = make_activities(3, now=feb + timedelta(days=5))
    in_mar = make_activity(timestamp=mar + timedelta(days=1))
    in_default = make_activity(timestamp=datetime(2001, 1, 1, tzinfo=UTC))
    Activity.objects.filter(pk=in_jan[0].pk).update(seq=41)
    Activity.objects.filter(pk=in_feb[0].pk).update(seq=77)
    _finding(in_jan[1])
    kept_finding = _finding(in_mar)

    cutoff = mar + timedelta(days=10)  # March is only partly older: it stays
    if not PG:
        # No partitions: nothing is dropped here, retention deletes rows (with tombstones).
        assert partitioning.partitions_before(cutoff) == []
        result = partitioning.drop_partitions_before(cutoff)
        assert result.partitions == [] and result.rows == 0 and result.until is None
        assert Activity.objects.count() == 9 and Finding.objects.count() == 2
        return
    plan = partitioning.partitions_before(cutoff)
    assert [(p.name, p.rows, p.max_seq, p.unsealed) for p in plan] == [
        ("tracking_activity_p2024_01", 4, 41, 3),
        ("tracking_activity_p2024_02", 3, 77, 2),
    ]
    assert Activity.objects.count() == 9  # planning changes nothing

    result = partitioning.drop_partitions_before(cutoff)
    assert result.partitions == ["tracking_activity_p2024_01", "tracking_activity_p2024_02"]
    assert result.rows == 7 and result.max_seq == 77 and result.findings == 1
    assert result.until == mar
    assert not Activity.objects.filter(pk__in=[a.pk for a in in_jan + in_feb]).exists()
    assert Activity.objects.filter(pk__in=[in_mar.pk, in_default.pk]).count() == 2
    assert list(Finding.objects.values_list("pk", flat=True)) == [kept_finding.pk]
    names = {p.name for p in partitioning.list_partitions()}
    assert "tracking_activity_p2024_03" in names and partitioning.DEFAULT_PARTITION in names
    assert partitioning.drop_partitions_before(cutoff).partitions == []
    with pytest.raises(ValueError):
        partitioning.drop_partitions_before(datetime(2024, 1, 1))


@pytest.mark.django_db
def test_migration_converts_a_non_empty_table_and_back():
    migration = importlib.import_module("tracking.migrations.0002_postgres_partitioning")
    if not PG:
        rows = make_activities(3, now=datetime(2023, 6, 15, tzinfo=UTC))
        before = {a.pk: a.mac for a in rows}
        # The migration's functions are no-ops off PostgreSQL (the schema editor is not needed).
        assert partitioning.partition_table(connection) is False
        assert partitioning.unpartition_table(connection) is False
        assert not partitioning.is_partitioned()
        assert dict(Activity.objects.values_list("pk", "mac")) == before
        assert Activity.objects.get(pk=rows[0].pk).headers["Accept"] == "application/json"
        return
    with connection.cursor() as cur:
        cur.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'tracking_activity' "
            "AND indexname <> 'tracking_activity_pkey'"
        )
        index_names = {r[0] for r in cur.fetchall()}
    assert {"trk_user_time", "trk_flagged_time"} <= index_names

    # Back to a plain table (the migration's reverse), with rows in several months.
    with connection.schema_editor() as editor:
        migration.backwards(None, editor)
    assert not partitioning.is_partitioned()
    rows = make_activities(3, now=datetime(2023, 6, 15, tzinfo=UTC))
    rows += make_activities(2, now=NOW)
    before = {a.pk: a.mac for a in rows}

    with connection.schema_editor() as editor:
        migration.forwards(None, editor)
    assert partitioning.is_partitioned()
    assert dict(Activity.objects.values_list("pk", "mac")) == before
    assert _where(rows[0].pk) == "tracking_activity_p2023_06"
    assert _where(rows[-1].pk) == partitioning.partition_name(THIS_MONTH)
    assert Activity.objects.get(pk=rows[0].pk).headers["Accept"] == "application/json"
    with connection.cursor() as cur:
        cur.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'tracking_activity' "
            "AND indexname <> 'tracking_activity_pkey'"
        )
        assert {r[0] for r in cur.fetchall()} == index_names
        cur.execute(
            "SELECT count(*) FROM pg_constraint WHERE conrelid = 'tracking_activity'::regclass "
            "AND contype = 'f'"
        )
        assert cur.fetchone()[0] == 2  # user and reviewed_by keep their FKs
    # Running it again is a no-op.
    assert partitioning.partition_table(connection) is False


@pytest.mark.django_db
def test_partitioning_can_be_switched_off():
    # Back to a plain table first (a no-op on SQLite, whose schema editor is not needed).
    assert partitioning.unpartition_table(connection) is PG
    with override_settings(TRACKING_PARTITIONING=False):
        assert partitioning.partition_table(connection) is False
        assert not partitioning.is_partitioned()
        assert partitioning.ensure_partitions(3) == []


@pytest.mark.django_db
def test_partitioning_migration_leaves_model_state_alone():
    """Migration 0002 is SQL only: Django's autodetector sees no change to make."""
    out = StringIO()
    call_command("makemigrations", "tracking", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()
