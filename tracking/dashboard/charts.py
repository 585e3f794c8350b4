"""Numbers behind the dashboard's charts, for the same filters as the queue.

Complements the stats API (``api/tracking/stats/``) with what the charts need beyond it:
per-hour series, top networks, findings per detector and response-time percentiles. The
window ends at the newest matching activity (not the wall clock), so imported history and a
quiet night still draw meaningful charts; every aggregate is bounded by that window.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any

from django.db import connection
from django.db.models import Aggregate, Count, FloatField, Max, Q, QuerySet
from django.db.models.functions import TruncDay, TruncHour

from tracking.activity_types import type_label
from tracking.dashboard.filters import Filters
from tracking.dashboard.present import network
from tracking.models import Activity, Finding

UTC = dt_timezone.utc

HOURS = 48
DAYS = 30
TOP = 10
PERCENTILES = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))


class _PercentileDisc(Aggregate):
    """PostgreSQL's nearest-rank percentile (the SQLite path below computes the same rank)."""

    function = "percentile_disc"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression: str, fraction: float, **extra: Any) -> None:
        super().__init__(expression, fraction=repr(float(fraction)), **extra)


def percentiles(qs: QuerySet) -> dict[str, float | None]:
    """p50/p95/p99 of ``duration`` (ms) by nearest rank; None when nothing was timed."""
    timed = qs.filter(duration__isnull=False)
    if connection.vendor == "postgresql":
        return timed.aggregate(**{name: _PercentileDisc("duration", p) for name, p in PERCENTILES})
    n = timed.count()
    out: dict[str, float | None] = {}
    ordered = timed.order_by("duration").values_list("duration", flat=True)
    for name, p in PERCENTILES:
        out[name] = ordered[max(0, math.ceil(p * n) - 1)] if n else None
    return out


def _series(qs: QuerySet, trunc, start: datetime, step: timedelta, size: int) -> list[dict]:
    rows = (
        qs.filter(timestamp__gte=start, timestamp__lt=start + step * size)
        .annotate(bucket=trunc("timestamp", tzinfo=UTC))
        .values("bucket")
        .annotate(count=Count("id"), flagged=Count("id", filter=Q(flagged=True)))
        .order_by("bucket")
    )
    found = {r["bucket"]: r for r in rows}
    out = []
    for i in range(size):
        bucket = start + step * i
        hit = found.get(bucket, {})
        out.append(
            {
                "bucket": bucket.isoformat(),
                "count": hit.get("count", 0),
                "flagged": hit.get("flagged", 0),
            }
        )
    return out


def chart_data(filters: Filters) -> dict[str, Any]:
    qs = filters.apply(Activity.objects.all())
    latest = filters.until or qs.aggregate(top=Max("timestamp"))["top"]
    if latest is None:
        return {
            "window": None,
            "counts": {"total": 0, "flagged": 0},
            "per_hour": [],
            "per_day": [],
            "types": [],
            "countries": [],
            "networks": [],
            "detectors": [],
            "response_times": {name: None for name, _ in PERCENTILES} | {"count": 0},
        }
    latest = latest.astimezone(UTC)
    last_hour = latest.replace(minute=0, second=0, microsecond=0)
    last_day = last_hour.replace(hour=0)
    hour_start = last_hour - timedelta(hours=HOURS - 1)
    day_start = last_day - timedelta(days=DAYS - 1)
    window_start = max(filters.since, day_start) if filters.since else day_start
    window = qs.filter(timestamp__gte=window_start, timestamp__lt=last_day + timedelta(days=1))

    counts = window.aggregate(total=Count("id"), flagged=Count("id", filter=Q(flagged=True)))
    types = [
        {"type": r["type"], "type_display": type_label(r["type"]), "count": r["count"]}
        for r in window.values("type").annotate(count=Count("id")).order_by("-count", "type")[:TOP]
    ]
    countries = list(
        window.exclude(country="")
        .values("country")
        .annotate(count=Count("id"), flagged=Count("id", filter=Q(flagged=True)))
        .order_by("-count", "country")[:TOP]
    )
    networks = []
    for r in (
        window.exclude(asn__isnull=True, isp="")
        .values("asn", "isp")
        .annotate(count=Count("id"), flagged=Count("id", filter=Q(flagged=True)))
        .order_by("-count", "asn")[:TOP]
    ):
        r["label"] = network(Activity(asn=r["asn"], isp=r["isp"]))
        networks.append(r)
    detectors = list(
        Finding.objects.filter(activity__in=window.values("id"), suppressed=False)
        .values("detector")
        .annotate(count=Count("id"), flagged=Count("id", filter=Q(flag=True)))
        .order_by("-count", "detector")[:TOP]
    )
    timing = percentiles(window)
    timing["count"] = window.filter(duration__isnull=False).count()

    return {
        "window": {
            "start": window_start.isoformat(),
            "end": (last_day + timedelta(days=1)).isoformat(),
            "latest": latest.isoformat(),
        },
        "counts": counts,
        "per_hour": _series(qs, TruncHour, hour_start, timedelta(hours=1), HOURS),
        "per_day": _series(qs, TruncDay, day_start, timedelta(days=1), DAYS),
        "types": types,
        "countries": countries,
        "networks": networks,
        "detectors": detectors,
        "response_times": timing,
    }
