"""GET api/tracking/activities/<id>/: every field, decrypted-but-redacted headers/params,
findings with explanations, review history."""

from __future__ import annotations

import pytest

from tracking.detection.review import review
from tracking.export.record import EXPORT_FIELDS
from tracking.models import Activity, Finding
from tracking.testing.factories import make_activity

pytestmark = pytest.mark.django_db


def url(pk):
    return f"/api/tracking/activities/{pk}/"


def test_detail_has_every_field(staff_client, staff_user):
    a = make_activity(
        type="PAYMENT",
        user=staff_user,
        headers={"User-Agent": "curl/8", "X-Trace": "abc"},
        params={"amount": "10", "q": "<script>alert(1)</script>"},
        tags=["impossible_travel"],
        risk_score=0.91,
        severity="high",
        flagged=True,
    )
    Finding.objects.create(
        activity_id=a.pk,
        timestamp=a.timestamp,
        detector="geo",
        tag="impossible_travel",
        score=0.91,
        severity="high",
        reason="London to Tokyo in 10 minutes (9,560 km/h)",
        evidence={"distance_km": 9560, "minutes": 10},
    )
    body = staff_client.get(url(a.pk)).json()
    model_fields = {f.name for f in Activity._meta.concrete_fields}
    assert model_fields <= set(body) | {"reviewed_by"}
    assert set(EXPORT_FIELDS) - {"findings"} <= set(body)
    assert body["type_display"] == "Payment"
    assert body["headers"] == {"User-Agent": "curl/8", "X-Trace": "abc"}
    assert body["params"]["q"] == "<script>alert(1)</script>"  # JSON: data, not markup
    assert body["risk_score"] == 0.91 and body["severity"] == "high"
    assert body["findings"] == [
        {
            "detector": "geo",
            "tag": "impossible_travel",
            "score": 0.91,
            "severity": "high",
            "reason": "London to Tokyo in 10 minutes (9,560 km/h)",
            "evidence": {"distance_km": 9560, "minutes": 10},
            "suppressed": False,
            "flag": False,
        }
    ]
    assert body["reviews"] == []
    assert body["user"] == staff_user.pk and body["username"] == "staff"


def test_detail_redacts_again_on_output(staff_client):
    # A row written by an older version that did not redact: the API still hides secrets.
    a = make_activity(
        headers={"Authorization": "Bearer abc.def", "Accept": "*/*"},
        params={"password": "hunter2", "nested": {"token": "t0k"}, "page": "1"},
    )
    body = staff_client.get(url(a.pk)).json()
    assert "abc.def" not in str(body["headers"]) and body["headers"]["Accept"] == "*/*"
    assert "hunter2" not in str(body["params"]) and "t0k" not in str(body["params"])
    assert body["params"]["page"] == "1"


def test_detail_includes_review_history(staff_client, staff_user):
    a = make_activity()
    review(a, by=staff_user, flagged=True, note="looks odd")
    review(a, by=staff_user, review_status="confirmed", note="confirmed with the user")
    body = staff_client.get(url(a.pk)).json()
    assert [r["action"] for r in body["reviews"]] == ["confirmed", "flag"]
    assert body["reviews"][0]["reviewer_username"] == "staff"
    assert body["reviews"][0]["note"] == "confirmed with the user"
    assert body["reviewed_by"] == staff_user.pk and body["reviewed_by_username"] == "staff"
    assert body["reviewed_at"]


def test_detail_survives_an_undecryptable_row(staff_client, settings):
    from tracking.integrity.crypto import generate_key

    a = make_activity(headers={"A": "b"})
    settings.TRACKING_ENCRYPTION_KEYS = [generate_key()]  # the old key is gone
    resp = staff_client.get(url(a.pk))
    assert resp.status_code == 200
    assert resp.json()["headers"] is None and resp.json()["id"] == str(a.pk)


def test_serializers_work_without_a_request(staff_user):
    from tracking.api.serializers import ActivityListSerializer, ActivitySerializer

    a = make_activity(user=staff_user, type="AUTH", duration=150.2)
    compact = ActivityListSerializer(a).data
    assert compact["type_display"] == "Authentication" and compact["user"] == staff_user.pk
    assert compact["duration"] == 150.2
    full = ActivitySerializer(a).data
    assert set(compact) < set(full)
    assert full["headers"] == a.headers and full["findings"] == [] and full["reviews"] == []


def test_non_finite_numbers_never_break_the_json(staff_client):
    a = make_activity(duration=float("nan"), latitude=float("inf"))
    body = staff_client.get(f"/api/tracking/activities/{a.pk}/").json()
    assert body["duration"] is None and body["latitude"] is None
    listed = staff_client.get("/api/tracking/activities/").json()["results"][0]
    assert listed["duration"] is None
    stats = staff_client.get("/api/tracking/stats/")
    assert stats.status_code == 200
