"""GET api/tracking/activities/: seed shape, compact fields, pagination, bounded count, cursor."""

from __future__ import annotations

from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

import pytest
from django.test import override_settings

from tracking.testing.factories import make_activities, make_activity

UTC = dt_timezone.utc

pytestmark = pytest.mark.django_db
URL = "/api/tracking/activities/"

SEED_ITEM_KEYS = {
    "id",
    "timestamp",
    "type",
    "type_display",
    "user",
    "ip_address",
    "endpoint",
    "status",
    "duration",
}
EXTRA_ITEM_KEYS = {"username", "flagged", "tags", "country", "city", "risk_score", "outcome"}


def test_list_matches_seed_shape(staff_client, staff_user):
    a = make_activity(
        type="AUTH",
        user=staff_user,
        timestamp=datetime(2023, 1, 1, 12, 0, tzinfo=UTC),
        ip_address="192.168.1.1",
        endpoint="/api/auth/login/",
        status=200,
        duration=150.2,
        country="GB",
        city="London",
        tags=["new_country"],
        risk_score=0.4,
    )
    resp = staff_client.get(URL)
    assert resp.status_code == 200
    body = resp.json()
    assert set(body) == {"count", "next", "previous", "results"}
    assert body["count"] == 1 and body["next"] is None and body["previous"] is None
    item = body["results"][0]
    assert set(item) == SEED_ITEM_KEYS | EXTRA_ITEM_KEYS
    assert item == {
        "id": str(a.id),
        "timestamp": "2023-01-01T12:00:00Z",
        "type": "AUTH",
        "type_display": "Authentication",
        "user": staff_user.pk,
        "ip_address": "192.168.1.1",
        "endpoint": "/api/auth/login/",
        "status": 200,
        "outcome": "success",
        "duration": 150.2,
        "username": "staff",
        "flagged": False,
        "tags": ["new_country"],
        "country": "GB",
        "city": "London",
        "risk_score": 0.4,
    }


def test_list_is_newest_first_and_page_numbers(staff_client):
    make_activities(125)
    body = staff_client.get(URL).json()
    assert body["count"] == 125
    assert len(body["results"]) == 50
    assert body["next"].endswith("/api/tracking/activities/?page=2")
    assert body["previous"] is None
    stamps = [r["timestamp"] for r in body["results"]]
    assert stamps == sorted(stamps, reverse=True)
    page3 = staff_client.get(URL, {"page": 3}).json()
    assert len(page3["results"]) == 25 and page3["next"] is None
    assert page3["previous"].endswith("?page=2")
    assert page3["count"] == 125
    page2 = staff_client.get(URL, {"page": 2}).json()
    assert page2["previous"].endswith("/api/tracking/activities/")
    ids = {r["id"] for p in (body, page2, page3) for r in p["results"]}
    assert len(ids) == 125


def test_page_size_is_capped_and_validated(staff_client):
    make_activities(30)
    assert len(staff_client.get(URL, {"page_size": 10}).json()["results"]) == 10
    with override_settings(TRACKING_MAX_PAGE_SIZE=20):
        body = staff_client.get(URL, {"page_size": 1000}).json()
        assert len(body["results"]) == 20
    resp = staff_client.get(URL, {"page_size": "lots"})
    assert resp.status_code == 400 and "page_size" in resp.json()
    resp = staff_client.get(URL, {"page": "two"})
    assert resp.status_code == 400 and "page" in resp.json()
    assert staff_client.get(URL, {"page": 99}).status_code == 404
    assert staff_client.get(URL, {"page": 10**30}).status_code == 404
    assert staff_client.get(URL, {"page": 0}).status_code == 400


def test_count_is_bounded_above_the_limit(staff_client, django_assert_max_num_queries):
    make_activities(30)
    with override_settings(TRACKING_COUNT_LIMIT=10):
        body = staff_client.get(URL, {"page_size": 5}).json()
        assert body["count"] == 10
        assert body["count_is_estimate"] is True
        assert body["next"]
        # the last page still knows it is the last and gives the exact total
        last = staff_client.get(URL, {"page_size": 5, "page": 6}).json()
        assert last["next"] is None and last["count"] == 30 and "count_is_estimate" not in last
    with override_settings(TRACKING_COUNT_LIMIT=100):
        body = staff_client.get(URL, {"page_size": 5}).json()
        assert body["count"] == 30 and "count_is_estimate" not in body


def test_count_query_is_limited(staff_client):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    make_activities(12)
    with override_settings(TRACKING_COUNT_LIMIT=5), CaptureQueriesContext(connection) as ctx:
        staff_client.get(URL, {"page_size": 2})
    counts = [q["sql"] for q in ctx.captured_queries if "COUNT(" in q["sql"].upper()]
    assert counts and all("LIMIT 6" in sql for sql in counts)


def test_cursor_mode_pages_deep_with_same_envelope(staff_client):
    make_activities(23)
    seen = []
    body = staff_client.get(URL, {"cursor": "", "page_size": 10}).json()
    assert set(body) == {"count", "next", "previous", "results"}
    assert body["count"] == 23
    while True:
        seen += [r["id"] for r in body["results"]]
        if not body["next"]:
            break
        assert "cursor=" in body["next"]
        body = staff_client.get(body["next"]).json()
    assert len(seen) == len(set(seen)) == 23
    resp = staff_client.get(URL, {"cursor": "!!not-a-cursor!!"})
    assert resp.status_code == 400 and "cursor" in resp.json()


def test_cursor_mode_ascending(staff_client):
    now = datetime.now(UTC)
    make_activities(5, now=now)
    body = staff_client.get(URL, {"cursor": "", "ordering": "timestamp"}).json()
    stamps = [r["timestamp"] for r in body["results"]]
    assert stamps == sorted(stamps)


def test_ordering(staff_client):
    make_activity(duration=5.0, risk_score=0.9)
    make_activity(duration=500.0, risk_score=0.1)
    make_activity(duration=50.0, risk_score=0.5)
    durations = [
        r["duration"] for r in staff_client.get(URL, {"ordering": "duration"}).json()["results"]
    ]
    assert durations == [5.0, 50.0, 500.0]
    risks = [
        r["risk_score"]
        for r in staff_client.get(URL, {"ordering": "-risk_score"}).json()["results"]
    ]
    assert risks == [0.9, 0.5, 0.1]
    old = make_activity(timestamp=datetime.now(UTC) - timedelta(days=400))
    first = staff_client.get(URL, {"ordering": "timestamp"}).json()["results"][0]
    assert first["id"] == str(old.id)
    resp = staff_client.get(URL, {"ordering": "password"})
    assert resp.status_code == 400 and "ordering" in resp.json()


def test_list_and_detail_query_counts_do_not_grow_with_rows(staff_client, staff_user):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tracking.models import Finding

    make_activities(5, user=staff_user)
    with CaptureQueriesContext(connection) as small:
        staff_client.get(URL)
    make_activities(45, user=staff_user)
    with CaptureQueriesContext(connection) as big:
        assert len(staff_client.get(URL).json()["results"]) == 50
    assert len(big) <= len(small) + 1  # +1: a full page needs the bounded count

    a = make_activity(user=staff_user)
    Finding.objects.bulk_create(
        Finding(
            activity_id=a.pk,
            timestamp=a.timestamp,
            detector=f"d{i}",
            tag="t",
            score=0.1,
            reason="r",
        )
        for i in range(10)
    )
    with CaptureQueriesContext(connection) as ctx:
        staff_client.get(f"{URL}{a.pk}/")
    assert len(ctx) <= 8, [q["sql"] for q in ctx.captured_queries]
