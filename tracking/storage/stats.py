"""Statistics for the API and the dashboard (the ``stats/`` document).

Two ways to the same numbers:

* **rollups** (``Rollup``: counts per UTC hour, type and country, maintained by the writer)
  when only an hour-aligned ``since``/``until`` window is asked for, so unfiltered
  statistics never scan the activity table. The few figures rollups cannot hold are read
  through narrow indexes: flagged rows (``flagged``), reviewed rows (``review_status``), and
  ``Finding`` rows for the tag counts.
* **query**: aggregates of any filtered queryset (the list's filters apply).

``rebuild_rollups()`` recomputes the rollups from the activities (after an import that
bypassed the writer, or in tests); both paths give identical results on the same data.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any

from django.db.models import Avg, Count, Max, Min, Q, QuerySet, Sum
from django.db.models.functions import Coalesce, TruncDate, TruncHour
from django.utils import timezone

from tracking.activity_types import type_label
from tracking.models import Activity, DailyRollup, Finding, ReviewStatus, Rollup
from tracking.storage import rollups
from tracking.storage.rollups import day_floor, hour_floor

UTC = dt_timezone.utc

TOP_N = 10
RECENT_DAYS = 30
HOURLY_WINDOW = timedelta(days=7)


def hour_ceil(ts: datetime) -> datetime:
    floor = hour_floor(ts)
    return floor if floor == ts else floor + timedelta(hours=1)


def is_hour_aligned(ts: datetime | None) -> bool:
    return ts is None or hour_floor(ts) == ts


# --- rollup maintenance -----------------------------------------------------------------


def rebuild_rollups() -> int:
    """Recompute every ``Rollup`` (and ``DailyRollup``) row from the activity table; returns
    the hourly rows written."""
    return rollups.rebuild()


def rollups_cover(since: datetime | None = None, until: datetime | None = None) -> bool:
    """Whether rollups are maintained for the window: the oldest and newest activity in it
    each have their bucket. Two index lookups; catches rows stored around the writer."""
    qs = Activity.objects.all()
    if since is not None:
        qs = qs.filter(timestamp__gte=since)
    if until is not None:
        qs = qs.filter(timestamp__lt=until)
    ends = [
        qs.order_by("timestamp").values("timestamp", "type", "country").first(),
        qs.order_by("-timestamp").values("timestamp", "type", "country").first(),
    ]
    if ends[0] is None:
        return True  # nothing in the window: both paths give zeros
    for end in ends:
        dims = {"type": end["type"], "country": end["country"]}
        if not Rollup.objects.filter(bucket=hour_floor(end["timestamp"]), **dims).exists():
            return False
        if not DailyRollup.objects.filter(bucket=day_floor(end["timestamp"]), **dims).exists():
            return False
    return True


# --- statistics -------------------------------------------------------------------------


def _round(value: float | None) -> float | None:
    # Six places absorb summation-order noise (rollup sums vs. the database's AVG), so both
    # paths report the same number while keeping the mean's precision.
    value = _finite(value)
    return None if value is None else round(value, 6)


def _finite(value: float | None) -> float | None:
    """None for NaN/Infinity (an imported oddity must not break the JSON answer)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _window(qs: QuerySet, since: datetime | None, until: datetime | None, field: str) -> QuerySet:
    if since is not None:
        qs = qs.filter(**{f"{field}__gte": since})
    if until is not None:
        qs = qs.filter(**{f"{field}__lt": until})
    return qs


def _types(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"type": r["type"], "type_display": type_label(r["type"]), "count": r["count"]}
        for r in rows
    ]


def _top_flagged_users(activities: QuerySet) -> list[dict[str, Any]]:
    # COUNT(*) (= COUNT(id): id is never NULL) lets PostgreSQL answer from the partial index
    # ``trk_flagged_username`` alone (index-only scan) instead of visiting every flagged row.
    rows = (
        activities.filter(flagged=True)
        .exclude(username="")
        .order_by()
        .values("username")
        .annotate(count=Count("*"))
        .order_by("-count", "username")[:TOP_N]
    )
    return [{"username": r["username"], "count": r["count"]} for r in rows]


def _finding_counts(findings: QuerySet) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    findings = findings.filter(suppressed=False).order_by()
    tags = findings.values("tag").annotate(count=Count("id")).order_by("-count", "tag")
    detectors = (
        findings.values("detector").annotate(count=Count("id")).order_by("-count", "detector")
    )
    return (
        [{"tag": r["tag"], "count": r["count"]} for r in tags],
        [{"detector": r["detector"], "count": r["count"]} for r in detectors],
    )


def _hours(rows: Iterable[tuple[datetime, int, int]]) -> list[dict[str, Any]]:
    return [
        {"hour": hour.astimezone(UTC).isoformat().replace("+00:00", "Z"), "total": t, "flagged": f}
        for hour, t, f in rows
    ]


def _review_counts(rows: dict[str, int], total: int) -> dict[str, int]:
    counts = {status: rows.get(status, 0) for status in ReviewStatus.values}
    counts[ReviewStatus.OPEN] = total - sum(v for k, v in counts.items() if k != ReviewStatus.OPEN)
    return counts


def query_stats(
    queryset: QuerySet, *, now: datetime | None = None, top: int = TOP_N, hourly: bool = False
) -> dict[str, Any]:
    """Statistics aggregated over ``queryset`` (any filters already applied)."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=RECENT_DAYS)
    qs = queryset.order_by()
    agg = qs.aggregate(
        total=Count("id"),
        flagged=Count("id", filter=Q(flagged=True)),
        recent=Count("id", filter=Q(timestamp__gte=cutoff)),
        avg=Avg("duration"),
        max=Max("duration"),
        min=Min("duration"),
    )
    types = qs.values("type").annotate(count=Count("id")).order_by("-count", "type")
    days = (
        qs.annotate(date=TruncDate("timestamp", tzinfo=UTC))
        .values("date")
        .annotate(total=Count("id"), nflagged=Count("id", filter=Q(flagged=True)))
        .order_by("date")
    )
    countries = (
        qs.exclude(country="")
        .values("country")
        .annotate(count=Count("id"))
        .order_by("-count", "country")[:top]
    )
    reviews = {
        r["review_status"]: r["count"]
        for r in qs.values("review_status").annotate(count=Count("id")).order_by()
    }
    tags, detectors = _finding_counts(Finding.objects.filter(activity_id__in=qs.values("id")))
    result = {
        "counts": {"total": agg["total"], "flagged": agg["flagged"], "last_30_days": agg["recent"]},
        "response_times": {
            "avg": _round(agg["avg"]),
            "max": _finite(agg["max"]),
            "min": _finite(agg["min"]),
        },
        "types": _types(types),
        "per_day": [
            {"date": d["date"].isoformat(), "total": d["total"], "flagged": d["nflagged"]}
            for d in days
        ],
        "top_countries": [{"country": c["country"], "count": c["count"]} for c in countries],
        "top_flagged_users": _top_flagged_users(qs),
        "tags": tags,
        "detectors": detectors,
        "review_status": _review_counts(reviews, agg["total"]),
        "source": "query",
    }
    if hourly:
        hours = (
            qs.annotate(h=TruncHour("timestamp", tzinfo=UTC))
            .values("h")
            .annotate(total=Count("id"), nflagged=Count("id", filter=Q(flagged=True)))
            .order_by("h")
        )
        result["per_hour"] = _hours((h["h"], h["total"], h["nflagged"]) for h in hours)
    return result


def _day_ceil(ts: datetime) -> datetime:
    floor = day_floor(ts)
    return floor if floor == ts else floor + timedelta(days=1)


def _rollup_parts(since: datetime | None, until: datetime | None) -> list[QuerySet]:
    """Rollup rows covering the hour-aligned window [since, until): ``DailyRollup`` for the
    whole UTC days inside it, hourly ``Rollup`` for the partial days at its edges (or for all
    of it when it holds no whole day). Each row of the result is counted exactly once."""
    first = None if since is None else _day_ceil(since)
    last = None if until is None else day_floor(until)
    if first is not None and last is not None and first >= last:
        return [_window(Rollup.objects.order_by(), since, until, "bucket")]
    parts = [_window(DailyRollup.objects.order_by(), first, last, "bucket")]
    if since is not None and first is not None and since < first:
        parts.append(_window(Rollup.objects.order_by(), since, first, "bucket"))
    if until is not None and last is not None and last < until:
        parts.append(_window(Rollup.objects.order_by(), last, until, "bucket"))
    return parts


def _sorted_counts(counts: dict[str, int], key: str) -> list[dict[str, Any]]:
    # Same order as the query path (count descending, then the name), zero counts left out
    # (buckets emptied by deletions).
    return [
        {key: name, "count": n}
        for name, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        if n
    ]


def rollup_stats(
    since: datetime | None = None,
    until: datetime | None = None,
    *,
    now: datetime | None = None,
    top: int = TOP_N,
    hourly: bool = False,
) -> dict[str, Any]:
    """Statistics for an hour-aligned window read from the rollups (no scan of activities).

    Whole UTC days come from ``DailyRollup`` (all time: ~24x fewer rows than hourly), the
    partial days at the window's edges from ``Rollup``; the parts are merged here.
    """
    if not (is_hour_aligned(since) and is_hour_aligned(until)):
        raise ValueError("rollup statistics need an hour-aligned since/until")
    now = now or timezone.now()
    total = flagged = dcount = 0
    dsum = 0.0
    dmax: float | None = None
    dmin: float | None = None
    types: dict[str, int] = {}
    countries: dict[str, int] = {}
    days: dict[Any, list[int]] = {}
    for part in _rollup_parts(since, until):
        agg = part.aggregate(
            total=Coalesce(Sum("count"), 0),
            flagged=Coalesce(Sum("flagged"), 0),
            dsum=Sum("duration_sum"),
            dcount=Coalesce(Sum("duration_count"), 0),
            max=Max("duration_max"),
            min=Min("duration_min"),
        )
        total += agg["total"]
        flagged += agg["flagged"]
        dsum += agg["dsum"] or 0.0
        dcount += agg["dcount"]
        if agg["max"] is not None and (dmax is None or agg["max"] > dmax):
            dmax = agg["max"]
        if agg["min"] is not None and (dmin is None or agg["min"] < dmin):
            dmin = agg["min"]
        for r in part.values("type").annotate(n=Sum("count")):
            types[r["type"]] = types.get(r["type"], 0) + r["n"]
        for r in part.exclude(country="").values("country").annotate(n=Sum("count")):
            countries[r["country"]] = countries.get(r["country"], 0) + r["n"]
        per_day = (
            part.annotate(date=TruncDate("bucket", tzinfo=UTC))
            .values("date")
            .annotate(total=Sum("count"), nflagged=Sum("flagged"))
        )
        for r in per_day:
            day = days.setdefault(r["date"], [0, 0])
            day[0] += r["total"]
            day[1] += r["nflagged"]

    # last 30 days inside the window: whole hours from rollups, the partial first hour exactly.
    lower = now - timedelta(days=RECENT_DAYS)
    if since is not None and since > lower:
        lower = since
    boundary = hour_ceil(lower)
    if until is not None and boundary > until:
        boundary = until
    recent = sum(
        part.aggregate(n=Coalesce(Sum("count"), 0))["n"] for part in _rollup_parts(boundary, until)
    )
    if boundary > lower:
        recent += Activity.objects.filter(timestamp__gte=lower, timestamp__lt=boundary).count()

    activities = _window(Activity.objects.all(), since, until, "timestamp")
    reviews = {
        status: activities.filter(review_status=status).count()
        for status in ReviewStatus.values
        if status != ReviewStatus.OPEN
    }
    tags, detectors = _finding_counts(_window(Finding.objects.all(), since, until, "timestamp"))
    avg = dsum / dcount if dcount else None
    result = {
        "counts": {"total": total, "flagged": flagged, "last_30_days": recent},
        "response_times": {
            "avg": _round(avg),
            "max": _finite(dmax),
            "min": _finite(dmin),
        },
        "types": _types(_sorted_counts(types, "type")),
        "per_day": [
            {"date": date.isoformat(), "total": t, "flagged": f}
            for date, (t, f) in sorted(days.items())
            if t
        ],
        "top_countries": _sorted_counts(countries, "country")[:top],
        "top_flagged_users": _top_flagged_users(activities),
        "tags": tags,
        "detectors": detectors,
        "review_status": _review_counts(reviews, total),
        "source": "rollup",
    }
    if hourly:
        hours = (
            _window(Rollup.objects.order_by(), since, until, "bucket")
            .values("bucket")
            .annotate(total=Sum("count"), nflagged=Sum("flagged"))
            .order_by("bucket")
        )
        result["per_hour"] = _hours(
            (h["bucket"], h["total"], h["nflagged"]) for h in hours if h["total"]
        )
    return result


def compute_stats(
    queryset: QuerySet | None = None,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    filtered: bool = False,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Statistics for ``queryset`` (which already applies ``since``/``until``).

    Rollups are used when no other filter is set (``filtered`` False), the window is
    hour-aligned and rollups are maintained for it; otherwise the queryset is aggregated.
    Windows of at most seven days (``since`` given) also get a ``per_hour`` series.
    """
    now = now or timezone.now()
    # An hourly series for short windows only (a year of hours is not a useful answer).
    hourly = since is not None and (until or now) - since <= HOURLY_WINDOW
    if (
        not filtered
        and is_hour_aligned(since)
        and is_hour_aligned(until)
        and rollups_cover(since, until)
    ):
        return rollup_stats(since, until, now=now, hourly=hourly)
    if queryset is None:
        queryset = _window(Activity.objects.all(), since, until, "timestamp")
    return query_stats(queryset, now=now, hourly=hourly)
