"""PATCH api/tracking/activities/<id>/flag/: toggle, set, verdicts, validation, audit trail."""

from __future__ import annotations

import pytest

from tracking.models import Activity, Review, Rollup
from tracking.storage.stats import rebuild_rollups
from tracking.testing.factories import make_activity

pytestmark = pytest.mark.django_db


def url(pk):
    return f"/api/tracking/activities/{pk}/flag/"


def test_empty_body_toggles_and_returns_detail(staff_client, staff_user):
    a = make_activity()
    resp = staff_client.patch(url(a.pk), format="json")
    assert resp.status_code == 200
    body = resp.json()
    assert body["flagged"] is True and body["id"] == str(a.pk)
    assert body["reviewed_by"] == staff_user.pk and body["reviewed_at"]
    assert "findings" in body and body["reviews"][0]["action"] == "flag"
    assert staff_client.patch(url(a.pk)).json()["flagged"] is False
    assert list(
        Review.objects.filter(activity_id=a.pk)
        .order_by("created_at", "id")
        .values_list("action", flat=True)
    ) == ["flag", "unflag"]


def test_set_flag_explicitly_is_idempotent(staff_client):
    a = make_activity()
    for _ in range(2):
        assert (
            staff_client.patch(url(a.pk), {"flagged": True}, format="json").json()["flagged"]
            is True
        )
    assert Review.objects.filter(activity_id=a.pk).count() == 1
    assert (
        staff_client.patch(url(a.pk), {"flagged": False}, format="json").json()["flagged"] is False
    )


def test_verdict_with_note(staff_client, staff_user, monkeypatch):
    calls = []
    monkeypatch.setattr(
        "tracking.detection.feedback.on_review",
        lambda activity, status: calls.append((activity.pk, status)),
    )
    a = make_activity(flagged=True)
    resp = staff_client.patch(
        url(a.pk), {"review_status": "dismissed", "note": "user was travelling"}, format="json"
    )
    assert resp.status_code == 200
    body = resp.json()
    assert body["review_status"] == "dismissed" and body["flagged"] is True
    r = Review.objects.get(activity_id=a.pk)
    assert (r.action, r.note, r.reviewer_id, r.reviewer_username) == (
        "dismissed",
        "user was travelling",
        staff_user.pk,
        "staff",
    )
    assert calls == [(a.pk, "dismissed")]
    staff_client.patch(url(a.pk), {"review_status": "open"}, format="json")
    staff_client.patch(url(a.pk), {"review_status": "confirmed"}, format="json")
    assert Activity.objects.get(pk=a.pk).review_status == "confirmed"
    assert [c[1] for c in calls] == ["dismissed", "open", "confirmed"]


@pytest.mark.parametrize(
    "body, field",
    [
        ({"review_status": "maybe"}, "review_status"),
        ({"review_status": 3}, "review_status"),
        ({"flagged": "perhaps"}, "flagged"),
        ({"flagged": [1]}, "flagged"),
        ({"note": {"a": 1}}, "note"),
        ({"reviewed_by": 1}, "reviewed_by"),
    ],
)
def test_invalid_values_are_400_and_change_nothing(staff_client, body, field):
    a = make_activity()
    resp = staff_client.patch(url(a.pk), body, format="json")
    assert resp.status_code == 400
    assert field in resp.json()
    a2 = Activity.objects.get(pk=a.pk)
    assert (a2.flagged, a2.review_status, a2.reviewed_by_id) == (False, "open", None)
    assert not Review.objects.exists()


def test_non_object_body_is_400(staff_client):
    a = make_activity()
    resp = staff_client.patch(url(a.pk), data="[1, 2]", content_type="application/json")
    assert resp.status_code == 400
    resp = staff_client.patch(url(a.pk), data="{not json", content_type="application/json")
    assert resp.status_code == 400


def test_review_keeps_the_row_mac_valid(staff_client):
    from tracking.integrity.macs import row_ok

    a = make_activity()
    staff_client.patch(url(a.pk), {"review_status": "confirmed", "flagged": True}, format="json")
    a2 = Activity.objects.get(pk=a.pk)
    assert a2.flagged and row_ok(a2)
    assert a2.headers == a.headers


def test_flag_changes_adjust_the_rollup(staff_client):
    a = make_activity(type="AUTH", country="GB")
    rebuild_rollups()
    roll = Rollup.objects.get(type="AUTH", country="GB")
    assert roll.flagged == 0
    staff_client.patch(url(a.pk), format="json")
    roll.refresh_from_db()
    assert roll.flagged == 1
    staff_client.patch(url(a.pk), {"review_status": "confirmed"}, format="json")
    roll.refresh_from_db()
    assert roll.flagged == 1
    staff_client.patch(url(a.pk), format="json")
    roll.refresh_from_db()
    assert roll.flagged == 0
