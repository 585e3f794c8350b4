"""GET api/tracking/stats/: the seed's shape, breakdowns, filters, and rollup == query."""

from __future__ import annotations

from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

import pytest

from tracking.models import Activity, Finding
from tracking.storage.stats import compute_stats, query_stats, rebuild_rollups, rollup_stats
from tracking.testing.factories import make_activities, make_activity

UTC = dt_timezone.utc

pytestmark = pytest.mark.django_db
URL = "/api/tracking/stats/"
NOW = datetime.now(UTC)


def dataset(staff_user):
    make_activity(
        type="AUTH",
        country="GB",
        duration=50.2,
        timestamp=NOW - timedelta(hours=2),
        user=staff_user,
        flagged=True,
        tags=["impossible_travel"],
    )
    make_activity(
        type="AUTH",
        country="GB",
        duration=1250.0,
        timestamp=NOW - timedelta(days=1),
        username="alice",
        flagged=True,
    )
    make_activity(
        type="PAYMENT",
        country="FR",
        duration=210.5,
        timestamp=NOW - timedelta(days=40),
        username="alice",
        flagged=True,
        review_status="dismissed",
    )
    make_activity(
        type="API",
        country="",
        duration=None,
        timestamp=NOW - timedelta(days=2),
        username="bob",
        review_status="confirmed",
    )
    a = Activity.objects.get(username="staff")
    Finding.objects.create(
        activity_id=a.pk,
        timestamp=a.timestamp,
        detector="geo",
        tag="impossible_travel",
        score=0.9,
        reason="r",
    )
    Finding.objects.create(
        activity_id=a.pk,
        timestamp=a.timestamp,
        detector="geo",
        tag="new_country",
        score=0.3,
        reason="r",
        suppressed=True,
    )


def test_stats_match_the_seed_shape(staff_client, staff_user):
    dataset(staff_user)
    body = staff_client.get(URL).json()
    assert set(body["counts"]) == {"total", "flagged", "last_30_days"}
    assert set(body["response_times"]) == {"avg", "max", "min"}
    assert body["counts"] == {"total": 4, "flagged": 3, "last_30_days": 3}
    assert body["response_times"] == {
        "avg": pytest.approx((50.2 + 1250.0 + 210.5) / 3),
        "max": 1250.0,
        "min": 50.2,
    }
    assert body["types"][0] == {"type": "AUTH", "type_display": "Authentication", "count": 2}
    assert {t["type"] for t in body["types"]} == {"AUTH", "PAYMENT", "API"}
    assert all(set(t) == {"type", "type_display", "count"} for t in body["types"])
    assert body["top_countries"] == [{"country": "GB", "count": 2}, {"country": "FR", "count": 1}]
    assert body["top_flagged_users"] == [
        {"username": "alice", "count": 2},
        {"username": "staff", "count": 1},
    ]
    assert body["tags"] == [{"tag": "impossible_travel", "count": 1}]  # suppressed not counted
    assert body["review_status"] == {"open": 2, "confirmed": 1, "dismissed": 1}
    assert sum(d["total"] for d in body["per_day"]) == 4
    assert sum(d["flagged"] for d in body["per_day"]) == 3
    assert all(set(d) == {"date", "total", "flagged"} for d in body["per_day"])
    assert [d["date"] for d in body["per_day"]] == sorted(d["date"] for d in body["per_day"])


def test_empty_database(staff_client):
    body = staff_client.get(URL).json()
    assert body["counts"] == {"total": 0, "flagged": 0, "last_30_days": 0}
    assert body["response_times"] == {"avg": None, "max": None, "min": None}
    assert body["types"] == [] and body["per_day"] == []


def test_filters_apply(staff_client, staff_user):
    dataset(staff_user)
    body = staff_client.get(URL, {"type": "AUTH"}).json()
    assert body["counts"] == {"total": 2, "flagged": 2, "last_30_days": 2}
    assert body["source"] == "query"
    body = staff_client.get(URL, {"since": (NOW - timedelta(days=3)).isoformat()}).json()
    assert body["counts"]["total"] == 3
    body = staff_client.get(URL, {"username": "alice", "flagged": "true"}).json()
    assert body["counts"]["total"] == 2 and body["response_times"]["max"] == 1250.0


def test_rollups_and_query_agree(staff_user):
    dataset(staff_user)
    make_activities(40, now=NOW)
    rebuild_rollups()
    fast = rollup_stats(now=NOW)
    slow = query_stats(Activity.objects.all(), now=NOW)
    assert fast.pop("source") == "rollup" and slow.pop("source") == "query"
    assert fast == slow
    since = (NOW - timedelta(days=3)).replace(minute=0, second=0, microsecond=0)
    until = (NOW - timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    fast = rollup_stats(since, until, now=NOW)
    slow = query_stats(Activity.objects.filter(timestamp__gte=since, timestamp__lt=until), now=NOW)
    fast.pop("source"), slow.pop("source")
    assert fast == slow
    assert fast["counts"]["total"] > 0


def test_api_uses_rollups_when_maintained(staff_client, staff_user):
    dataset(staff_user)
    # without rollups for the data the API aggregates the table
    assert staff_client.get(URL).json()["source"] == "query"
    rebuild_rollups()
    body = staff_client.get(URL).json()
    assert body["source"] == "rollup"
    assert body["counts"] == {"total": 4, "flagged": 3, "last_30_days": 3}
    aligned = (NOW - timedelta(days=3)).replace(minute=0, second=0, microsecond=0)
    assert staff_client.get(URL, {"since": aligned.isoformat()}).json()["source"] == "rollup"
    assert (
        staff_client.get(URL, {"since": (aligned + timedelta(minutes=5)).isoformat()}).json()[
            "source"
        ]
        == "query"
    )
    assert staff_client.get(URL, {"type": "AUTH"}).json()["source"] == "query"


def test_rollup_path_reads_no_activity_aggregate(staff_user):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    dataset(staff_user)
    rebuild_rollups()
    with CaptureQueriesContext(connection) as ctx:
        result = compute_stats(now=NOW)
    assert result["source"] == "rollup"
    for q in ctx.captured_queries:
        sql = q["sql"].upper()
        if 'FROM "TRACKING_ACTIVITY"' in sql and "COUNT(" in sql:
            # only narrow, indexed counts: flagged rows, reviewed rows, a partial hour
            assert "WHERE" in sql, sql


def test_stats_are_cheap_in_queries(staff_client, staff_user, django_assert_max_num_queries):
    dataset(staff_user)
    with django_assert_max_num_queries(20):
        staff_client.get(URL)


def test_rollups_written_by_ingest_agree_with_the_table(staff_client):
    """Through the real write path: the writer's rollups and the table give the same stats."""
    from tracking.events import Event
    from tracking.pipeline.ingest import ingest

    base = NOW.replace(minute=0, second=0, microsecond=0) - timedelta(days=2)
    events = [
        Event(
            type=("AUTH", "PAYMENT", "API")[i % 3],
            timestamp=base + timedelta(minutes=37 * i),
            username=f"user{i % 4}",
            ip_address=("81.2.69.10", "90.80.1.7", "185.220.1.9")[i % 3],
            endpoint="/api/x/",
            method="GET",
            status=200 if i % 5 else 500,
            duration=float(10 + i * 7) if i % 6 else None,
        )
        for i in range(30)
    ]
    result = ingest(events)
    assert result.stored == 30
    body = staff_client.get(URL).json()
    assert body["source"] == "rollup"
    slow = query_stats(Activity.objects.all())
    body.pop("source"), slow.pop("source")
    assert body["counts"] == slow["counts"] and body["counts"]["total"] == 30
    assert body["response_times"] == slow["response_times"]
    assert body["types"] == slow["types"]
    assert body["per_day"] == slow["per_day"]
    assert body["top_countries"] == slow["top_countries"]
    # a review through the API keeps the rollup path exact
    a = Activity.objects.order_by("timestamp").first()
    staff_client.patch(f"/api/tracking/activities/{a.pk}/flag/")
    fast = staff_client.get(URL).json()
    assert fast["source"] == "rollup"
    assert fast["counts"] == query_stats(Activity.objects.all())["counts"]


def test_per_hour_series_for_short_windows(staff_client, staff_user):
    base = NOW.replace(minute=0, second=0, microsecond=0) - timedelta(hours=5)
    make_activity(timestamp=base + timedelta(minutes=5), flagged=True)
    make_activity(timestamp=base + timedelta(minutes=50))
    make_activity(timestamp=base + timedelta(hours=2, minutes=1))
    since = (base - timedelta(hours=1)).isoformat()
    slow = staff_client.get(URL, {"since": since}).json()
    rebuild_rollups()
    fast = staff_client.get(URL, {"since": since}).json()
    assert (slow["source"], fast["source"]) == ("query", "rollup")
    assert slow["per_hour"] == fast["per_hour"]
    stamp = base.strftime("%Y-%m-%dT%H:00:00Z")
    assert slow["per_hour"][0] == {"hour": stamp, "total": 2, "flagged": 1}
    assert [h["total"] for h in slow["per_hour"]] == [2, 1]
    # long or open windows: no hourly series
    assert "per_hour" not in staff_client.get(URL).json()
    assert (
        "per_hour"
        not in staff_client.get(URL, {"since": (NOW - timedelta(days=30)).isoformat()}).json()
    )
