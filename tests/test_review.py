"""tracking.detection.review: the one review path (API, admin and dashboard)."""

from __future__ import annotations

import pytest

from tracking.detection.review import ReviewError, delete_activity, review, review_many
from tracking.models import Activity, Review, Rollup, Tombstone
from tracking.storage.stats import rebuild_rollups
from tracking.testing.factories import make_activities, make_activity

pytestmark = pytest.mark.django_db


def test_toggle_set_and_verdict(staff_user):
    a = make_activity()
    a = review(a, by=staff_user, toggle=True)
    assert a.flagged and a.reviewed_by_id == staff_user.pk and a.reviewed_at
    a = review(a, by=staff_user, flagged=True)  # no change, nothing recorded
    assert Review.objects.count() == 1
    a = review(a, by=staff_user, review_status="confirmed", note="call with the user")
    assert a.review_status == "confirmed" and a.flagged
    actions = list(Review.objects.order_by("created_at", "id").values_list("action", "note"))
    assert actions == [("flag", ""), ("confirmed", "call with the user")]


def test_note_alone_is_recorded(staff_user):
    a = make_activity()
    review(a, by=staff_user, note="looked at it")
    r = Review.objects.get()
    assert (r.action, r.note) == ("open", "looked at it")
    assert not Activity.objects.get(pk=a.pk).flagged


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"review_status": "closed"}, "review_status"),
        ({"flagged": "yes"}, "flagged"),
        ({"note": 5}, "note"),
    ],
)
def test_invalid_input_raises_and_writes_nothing(staff_user, kwargs, field):
    a = make_activity()
    with pytest.raises(ReviewError) as exc:
        review(a, by=staff_user, **kwargs)
    assert exc.value.field == field
    assert not Review.objects.exists()


def test_on_review_is_called_with_the_verdict(staff_user, monkeypatch):
    calls = []
    monkeypatch.setattr(
        "tracking.detection.feedback.on_review",
        lambda activity, status: calls.append((activity.pk, activity.review_status, status)),
    )
    a = make_activity(flagged=True)
    review(a, by=staff_user, flagged=False)
    assert calls == []  # unflagging is not a verdict
    review(a, by=staff_user, review_status="dismissed")
    assert calls == [(a.pk, "dismissed", "dismissed")]


def test_review_many_and_rollups(staff_user):
    rows = make_activities(4, type="DATA", country="DE")
    rebuild_rollups()
    assert review_many(rows[:3], by=staff_user, flagged=True) == 3
    assert (
        sum(Rollup.objects.filter(type="DATA", country="DE").values_list("flagged", flat=True)) == 3
    )
    assert Activity.objects.filter(flagged=True).count() == 3


def test_delete_activity_writes_tombstone_and_review(staff_user):
    a = make_activity()
    delete_activity(a, by=staff_user, reason="api")
    assert not Activity.objects.filter(pk=a.pk).exists()
    assert Tombstone.objects.filter(activity_id=a.pk, deleted_by="staff").exists()
    r = Review.objects.get(activity_id=a.pk)
    assert r.action == "delete" and r.reviewer_id == staff_user.pk


def test_review_by_the_system_has_no_reviewer():
    a = make_activity()
    a = review(a, by=None, flagged=True)
    assert a.flagged and a.reviewed_by_id is None
    assert Review.objects.get().reviewer_username == ""
