"""The write side of the statistics rollups: hourly (``Rollup``) and daily (``DailyRollup``).

Both tables hold, per bucket × type × country: ``count``, ``flagged``, ``duration_sum``,
``duration_count``, ``duration_min``, ``duration_max``. They change only through this module:

* ``apply(acts)`` — the writer (``ingest``) adds a batch: ONE
  ``INSERT … ON CONFLICT (bucket, type, country) DO UPDATE`` statement per table, so a batch
  costs two statements however many groups it touches and concurrent writers cannot both
  miss a bucket (the database merges the race; no savepoint, no retry).
* ``adjust_flagged(activity, delta)`` — a review flagged/unflagged a row.
* ``forget(activities)`` — rows deleted through ``review.delete_activity``.
* ``rebuild()`` — recompute both tables from the activity table (imports around the writer,
  the benchmark loader, tests).

Retention (``retention.purge``) leaves rollups alone on purpose: they keep the history.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from datetime import timezone as dt_timezone
from typing import Any

from django.db import connections, models, router, transaction
from django.db.models import Count, F, Max, Min, Q, Sum
from django.db.models.functions import Coalesce, TruncDay, TruncHour

from tracking.models import Activity, DailyRollup, Rollup

UTC = dt_timezone.utc

_COLUMNS = (
    "bucket",
    "type",
    "country",
    "count",
    "flagged",
    "duration_sum",
    "duration_count",
    "duration_min",
    "duration_max",
)


def hour_floor(ts: datetime) -> datetime:
    """Start of the UTC hour holding ``ts`` (a ``Rollup.bucket``)."""
    return ts.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def day_floor(ts: datetime) -> datetime:
    """Start of the UTC day holding ``ts`` (a ``DailyRollup.bucket``)."""
    return ts.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _groups(acts: Iterable[Any]) -> dict[tuple[datetime, str, str], list]:
    """Hourly groups of ``acts``: key → [count, flagged, sum, n, min, max]."""
    groups: dict[tuple[datetime, str, str], list] = {}
    for a in acts:
        key = (hour_floor(a.timestamp), a.type, a.country or "")
        g = groups.get(key)
        if g is None:
            g = groups[key] = [0, 0, 0.0, 0, None, None]
        g[0] += 1
        if a.flagged:
            g[1] += 1
        d = a.duration
        if d is not None:
            g[2] += d
            g[3] += 1
            g[4] = d if g[4] is None or d < g[4] else g[4]
            g[5] = d if g[5] is None or d > g[5] else g[5]
    return groups


def _merge_days(hours: dict[tuple[datetime, str, str], list]) -> dict[tuple, list]:
    days: dict[tuple[datetime, str, str], list] = {}
    for (bucket, type_, country), g in hours.items():
        key = (day_floor(bucket), type_, country)
        d = days.get(key)
        if d is None:
            days[key] = list(g)
            continue
        d[0] += g[0]
        d[1] += g[1]
        d[2] += g[2]
        d[3] += g[3]
        if g[4] is not None and (d[4] is None or g[4] < d[4]):
            d[4] = g[4]
        if g[5] is not None and (d[5] is None or g[5] > d[5]):
            d[5] = g[5]
    return days


def _upserts(
    model: type[models.Model], groups: dict[tuple, list], connection
) -> list[tuple[str, list]]:
    """Statements adding ``groups`` to ``model``'s rows: one per parameter-limit chunk."""
    if not groups:
        return []
    bucket_field: Any = model._meta.get_field("bucket")
    head, tail = _statement_parts(model, connection)
    row_sql = "(" + ", ".join(["%s"] * len(_COLUMNS)) + ")"
    # Sorted keys: concurrent writers touch buckets in the same order (no lock-order deadlock).
    rows = sorted(groups.items(), key=lambda kv: kv[0])
    max_params = connection.features.max_query_params or 65535
    if connection.vendor == "postgresql":
        max_params //= 2  # apply() may send the hourly and the daily statement as one
    per_statement = max(1, max_params // len(_COLUMNS))
    statements = []
    for start in range(0, len(rows), per_statement):
        chunk = rows[start : start + per_statement]
        params: list[Any] = []
        for (bucket, type_, country), g in chunk:
            params += [bucket_field.get_db_prep_value(bucket, connection), type_, country, *g]
        statements.append((head + ", ".join([row_sql] * len(chunk)) + tail, params))
    return statements


_parts: dict[tuple[type, str], tuple[str, str]] = {}


def _statement_parts(model: type[models.Model], connection) -> tuple[str, str]:
    """The upsert around its VALUES rows, built once per model and backend (a synchronous
    request runs it for two rows)."""
    key = (model, connection.vendor)
    found = _parts.get(key)
    if found is not None:
        return found
    qn = connection.ops.quote_name
    table = qn(model._meta.db_table)
    if connection.vendor == "postgresql":
        least, greatest = "LEAST({0}, {1})", "GREATEST({0}, {1})"
    else:
        # SQLite's scalar MIN/MAX return NULL when any argument is NULL; COALESCE keeps the
        # non-NULL side (PostgreSQL's LEAST/GREATEST already ignore NULLs).
        least = "COALESCE(MIN({0}, {1}), {0}, {1})"
        greatest = "COALESCE(MAX({0}, {1}), {0}, {1})"

    def merged(col: str, template: str | None = None) -> str:
        old, new = f"{table}.{qn(col)}", f"EXCLUDED.{qn(col)}"
        return template.format(old, new) if template else f"{old} + {new}"

    updates = ", ".join(
        [f"{qn(c)} = {merged(c)}" for c in ("count", "flagged", "duration_sum", "duration_count")]
        + [
            f"{qn('duration_min')} = {merged('duration_min', least)}",
            f"{qn('duration_max')} = {merged('duration_max', greatest)}",
        ]
    )
    columns = ", ".join(qn(c) for c in _COLUMNS)
    found = _parts[key] = (
        f"INSERT INTO {table} ({columns}) VALUES ",  # noqa: S608 (identifiers quoted)
        f" ON CONFLICT ({qn('bucket')}, {qn('type')}, {qn('country')}) DO UPDATE SET {updates}",
    )
    return found


def apply(acts: Iterable[Any]) -> None:
    """Add stored activities (``timestamp``, ``type``, ``country``, ``flagged``,
    ``duration``) to the hourly and daily rollups: one upsert statement per table, sent as
    one statement on PostgreSQL (a round trip less for every synchronous request)."""
    hours = _groups(acts)
    if not hours:
        return
    connection = connections[router.db_for_write(Rollup)]
    hourly = _upserts(Rollup, hours, connection)
    daily = _upserts(DailyRollup, _merge_days(hours), connection)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql" and len(hourly) == 1 and len(daily) == 1:
            (h_sql, h_params), (d_sql, d_params) = hourly[0], daily[0]
            # A data-modifying CTE: both upserts in one statement and one round trip.
            cursor.execute(f"WITH hourly AS ({h_sql}) {d_sql}", h_params + d_params)
            return
        for sql, params in hourly + daily:
            cursor.execute(sql, params)


def adjust_flagged(activity: Any, delta: int) -> None:
    """A review changed ``activity.flagged``: move ``delta`` in both of its buckets."""
    dims = {"type": activity.type, "country": activity.country or ""}
    Rollup.objects.filter(bucket=hour_floor(activity.timestamp), **dims).update(
        flagged=F("flagged") + delta
    )
    DailyRollup.objects.filter(bucket=day_floor(activity.timestamp), **dims).update(
        flagged=F("flagged") + delta
    )


def forget(activities: Iterable[Any]) -> None:
    """Take deleted activities out of their hourly and daily buckets (count, flagged,
    duration sums).

    ``duration_min``/``duration_max`` cannot be un-merged; they stay as bounds of what was
    recorded in that bucket (``rebuild`` makes them exact again).
    """
    for a in activities:
        has_duration = a.duration is not None
        changes = {
            "count": F("count") - 1,
            "flagged": F("flagged") - (1 if a.flagged else 0),
            "duration_sum": F("duration_sum") - (a.duration if has_duration else 0.0),
            "duration_count": F("duration_count") - (1 if has_duration else 0),
        }
        dims = {"type": a.type, "country": a.country or ""}
        Rollup.objects.filter(bucket=hour_floor(a.timestamp), **dims).update(**changes)
        DailyRollup.objects.filter(bucket=day_floor(a.timestamp), **dims).update(**changes)


def rebuild_daily() -> int:
    """Recompute ``DailyRollup`` from the hourly rows (a daily row is the sum of its hours);
    returns the rows written."""
    rows = (
        Rollup.objects.order_by()
        .annotate(d=TruncDay("bucket", tzinfo=UTC))
        .values("d", "type", "country")
        .annotate(
            n=Sum("count"),
            nf=Sum("flagged"),
            dsum=Sum("duration_sum"),
            dcount=Sum("duration_count"),
            dmin=Min("duration_min"),
            dmax=Max("duration_max"),
        )
    )
    with transaction.atomic():
        return _replace_all(DailyRollup, rows, "d")


def _replace_all(model: type[models.Model], rows: Iterable[dict[str, Any]], bucket: str) -> int:
    """Replace every row of a rollup table with aggregated ``rows`` (keys ``bucket``, ``type``,
    ``country``, ``n``, ``nf``, ``dsum``, ``dcount``, ``dmin``, ``dmax``); returns the count."""
    manager = model._default_manager
    manager.all().delete()
    created = manager.bulk_create(
        (
            model(
                bucket=r[bucket],
                type=r["type"],
                country=r["country"],
                count=r["n"],
                flagged=r["nf"],
                duration_sum=r["dsum"],
                duration_count=r["dcount"],
                duration_min=r["dmin"],
                duration_max=r["dmax"],
            )
            for r in rows
        ),
        batch_size=1000,
    )
    return len(created)


def rebuild() -> int:
    """Recompute every ``Rollup`` row from the activity table, then the daily rows from
    them; returns the hourly rows written."""
    rows = (
        Activity.objects.order_by()
        .annotate(b=TruncHour("timestamp", tzinfo=UTC))
        .values("b", "type", "country")
        .annotate(
            n=Count("id"),
            nf=Count("id", filter=Q(flagged=True)),
            dsum=Coalesce(Sum("duration"), 0.0),
            dcount=Count("duration"),
            dmin=Min("duration"),
            dmax=Max("duration"),
        )
    )
    with transaction.atomic():
        created = _replace_all(Rollup, rows, "b")
        rebuild_daily()
    return created
