"""tracking.storage.rollups (hourly + daily upserts) and the daily/hourly split of rollup statistics:
every path must agree with a scan of the activity table."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from types import SimpleNamespace

import pytest

from tracking.detection.review import delete_activity, review
from tracking.models import Activity, DailyRollup, Rollup
from tracking.storage import rollups
from tracking.storage.stats import query_stats, rollup_stats
from tracking.testing.factories import build_activity

UTC = dt_timezone.utc

pytestmark = pytest.mark.django_db

NOW = datetime(2024, 6, 20, 15, 37, tzinfo=UTC)


def _spread(n: int = 300, *, days: int = 45, seed: int = 3) -> list[Activity]:
    """``n`` activities over ``days`` days before NOW: several types and countries, some
    flagged, some without a duration."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        rows.append(
            build_activity(
                i,
                timestamp=NOW - timedelta(seconds=rng.randrange(days * 86400)),
                type=rng.choice(["AUTH", "DATA", "VIEW"]),
                country=rng.choice(["GB", "FR", "DE", ""]),
                flagged=rng.random() < 0.2,
                duration=None if rng.random() < 0.1 else round(rng.uniform(1, 500), 1),
            )
        )
    return Activity.objects.bulk_create(rows)


def _table(model) -> dict[tuple, tuple]:
    return {
        (r.bucket, r.type, r.country): (
            r.count,
            r.flagged,
            round(r.duration_sum, 6),
            r.duration_count,
            r.duration_min,
            r.duration_max,
        )
        for r in model.objects.all()
    }


def _same(fast: dict, slow: dict) -> None:
    assert fast.pop("source") == "rollup" and slow.pop("source") == "query"
    assert fast == slow


def test_apply_in_batches_equals_rebuild():
    acts = _spread()
    # the writer's path: several batches, overlapping buckets
    rollups.apply(acts[:100])
    rollups.apply(acts[100:250])
    rollups.apply(acts[250:])
    hourly, daily = _table(Rollup), _table(DailyRollup)
    assert rollups.rebuild() == len(hourly)
    assert _table(Rollup) == hourly
    assert _table(DailyRollup) == daily
    assert sum(v[0] for v in daily.values()) == len(acts)


def test_apply_min_max_are_null_safe():
    ts = datetime(2024, 1, 1, 10, 5, tzinfo=UTC)
    act = lambda d: SimpleNamespace(  # noqa: E731
        timestamp=ts, type="AUTH", country="GB", flagged=False, duration=d
    )
    rollups.apply([act(None)])
    row = Rollup.objects.get()
    assert (row.count, row.duration_count, row.duration_min, row.duration_max) == (1, 0, None, None)
    rollups.apply([act(7.0), act(3.0)])
    rollups.apply([act(None), act(5.0)])
    for model in (Rollup, DailyRollup):
        row = model.objects.get()
        assert (row.count, row.duration_count, row.duration_sum) == (5, 3, 15.0)
        assert (row.duration_min, row.duration_max) == (3.0, 7.0)


def test_apply_is_one_statement_per_table():
    """One upsert per table; on PostgreSQL both travel as one statement (a CTE)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    acts = _spread(80)  # fewer groups than one statement's parameter limit (SQLite: 999)
    with CaptureQueriesContext(connection) as ctx:
        rollups.apply(acts)
    sqls = [q["sql"].upper() for q in ctx.captured_queries]
    assert len(sqls) == (1 if connection.vendor == "postgresql" else 2)
    assert sum(sql.count("ON CONFLICT") for sql in sqls) == 2
    assert all("TRACKING_ROLLUP" in sql or "TRACKING_DAILYROLLUP" in sql for sql in sqls)


def _windows():
    day = NOW.replace(hour=0, minute=0, second=0, microsecond=0)
    hour = NOW.replace(minute=0, second=0, microsecond=0)
    return [
        (None, None),  # all time: daily rows only
        (day - timedelta(days=20), None),  # day-aligned since
        (day - timedelta(days=20, hours=-5), None),  # partial first day
        (None, day - timedelta(days=3, hours=-7)),  # partial last day
        (day - timedelta(days=30, hours=-3), day - timedelta(days=2, hours=-11)),  # both edges
        (day - timedelta(days=10, hours=-2), day - timedelta(days=10, hours=-9)),  # within a day
        (hour - timedelta(days=6, hours=5), hour - timedelta(hours=2)),  # hourly series
        (day - timedelta(days=40), day - timedelta(days=39)),  # exactly one day
    ]


@pytest.mark.parametrize("window", range(len(_windows())))
def test_daily_split_agrees_with_a_scan(window):
    _spread()
    rollups.rebuild()
    since, until = _windows()[window]
    hourly = since is not None and (until or NOW) - since <= timedelta(days=7)
    fast = rollup_stats(since, until, now=NOW, hourly=hourly)
    qs = Activity.objects.all()
    if since is not None:
        qs = qs.filter(timestamp__gte=since)
    if until is not None:
        qs = qs.filter(timestamp__lt=until)
    slow = query_stats(qs, now=NOW, hourly=hourly)
    assert slow["counts"]["total"] > 0
    _same(fast, slow)


def test_all_time_reads_daily_rows_not_hourly():
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    _spread()
    rollups.rebuild()
    with CaptureQueriesContext(connection) as ctx:
        rollup_stats(now=NOW)
    sql = " ".join(q["sql"] for q in ctx.captured_queries)
    assert "tracking_dailyrollup" in sql
    # hourly rows only for the partial hours/days at the 30-day boundary
    hourly = [q["sql"] for q in ctx.captured_queries if '"tracking_rollup"' in q["sql"]]
    assert len(hourly) <= 1, hourly


def test_review_and_delete_keep_both_tables_exact(staff_user):
    acts = _spread(120)
    rollups.rebuild()
    unflagged = [a for a in acts if not a.flagged][:5]
    flagged = [a for a in acts if a.flagged][:3]
    for a in unflagged:
        review(a, by=staff_user, flagged=True)
    for a in flagged:
        review(a, by=staff_user, flagged=False)
    # delete rows whose duration is not an extreme of its bucket (min/max stay bounds)
    for a in acts[10:14]:
        delete_activity(Activity.objects.get(pk=a.pk), by=staff_user, reason="test")
    hourly, daily = _table(Rollup), _table(DailyRollup)
    rollups.rebuild()

    def counts(table):
        return {k: v[:4] for k, v in table.items() if v[0]}

    assert counts(hourly) == counts(_table(Rollup))
    assert counts(daily) == counts(_table(DailyRollup))
    fast = rollup_stats(now=NOW)
    slow = query_stats(Activity.objects.all(), now=NOW)
    for key in ("counts", "types", "per_day", "top_countries", "top_flagged_users"):
        assert fast[key] == slow[key], key
    assert fast["response_times"]["avg"] == slow["response_times"]["avg"]


def test_purge_keeps_history_in_both_tables(settings):
    """Retention keeps rollups (history): hourly and daily rows still agree after a purge."""
    from tracking.storage.retention import purge

    _spread(150)
    rollups.rebuild()
    before = rollup_stats(now=NOW)
    purge(before=NOW - timedelta(days=20))
    assert Activity.objects.filter(timestamp__lt=NOW - timedelta(days=20)).count() == 0
    daily = _table(DailyRollup)
    rollups.rebuild_daily()  # daily from the hourly rows
    assert _table(DailyRollup) == daily
    after = rollup_stats(now=NOW)
    before.pop("review_status"), after.pop("review_status")
    for key in ("counts", "types", "per_day", "top_countries", "response_times"):
        if key == "counts":
            # last_30_days counts rows newer than the cutoff: unchanged by the purge either way
            assert after[key]["total"] == before[key]["total"]
        else:
            assert after[key] == before[key], key


def test_migration_fills_daily_from_hourly():
    import importlib

    from django.apps import apps
    from django.db import connection

    migration = importlib.import_module("tracking.migrations.0003_dailyrollup_flagged_username")
    _spread(100)
    rollups.rebuild()
    expected = _table(DailyRollup)
    DailyRollup.objects.all().delete()
    migration.fill_daily(apps, SimpleNamespace(connection=connection))
    assert _table(DailyRollup) == expected
