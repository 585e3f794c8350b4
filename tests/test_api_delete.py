"""DELETE api/tracking/activities/<id>/delete/: permission, tombstone, recorded deletion."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tracking.models import Activity, Finding, Review, Rollup, Tombstone
from tracking.storage.stats import query_stats, rebuild_rollups, rollup_stats
from tracking.testing.factories import make_activities, make_activity

pytestmark = pytest.mark.django_db


def url(pk):
    return f"/api/tracking/activities/{pk}/delete/"


def test_delete_records_who_when_which(staff_client, staff_user):
    a = make_activity()
    Finding.objects.create(
        activity_id=a.pk, timestamp=a.timestamp, detector="d", tag="t", score=0.5, reason="r"
    )
    other = make_activity()
    resp = staff_client.delete(url(a.pk))
    assert resp.status_code == 204
    assert not Activity.objects.filter(pk=a.pk).exists()
    assert Activity.objects.filter(pk=other.pk).exists()
    assert not Finding.objects.filter(activity_id=a.pk).exists()
    r = Review.objects.get(activity_id=a.pk)
    assert (r.action, r.reviewer_id, r.reviewer_username) == ("delete", staff_user.pk, "staff")
    assert r.created_at
    t = Tombstone.objects.get(activity_id=a.pk)
    assert t.deleted_by == "staff" and t.reason == "api"
    assert staff_client.delete(url(a.pk)).status_code == 404


def test_delete_needs_the_delete_permission(django_user_model, api_client):
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user("rev", password="pw", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(
            codename__in=["view_activity", "review_activity", "export_activity"]
        )
    )
    a = make_activity()
    api_client.force_login(user)
    assert api_client.delete(url(a.pk)).status_code == 403
    assert Activity.objects.filter(pk=a.pk).exists()
    assert not Review.objects.exists()


def test_other_methods_are_not_allowed(staff_client):
    a = make_activity()
    assert staff_client.get(url(a.pk)).status_code == 405
    assert staff_client.post(url(a.pk)).status_code == 405
    assert staff_client.delete(f"/api/tracking/activities/{a.pk}/").status_code == 405
    assert Activity.objects.filter(pk=a.pk).exists()


def test_delete_keeps_rollup_statistics_consistent(staff_client):
    # One hour bucket whatever the clock says (the default spreads rows over 6 minutes,
    # which crosses an hour boundary in the first minutes of every hour).
    when = timezone.now().replace(minute=30, second=0, microsecond=0) - timedelta(hours=1)
    rows = make_activities(6, type="AUTH", country="FR", timestamp=when)
    staff_client.patch(f"/api/tracking/activities/{rows[0].pk}/flag/")
    rebuild_rollups()
    staff_client.delete(url(rows[0].pk))
    staff_client.delete(url(rows[1].pk))
    fast = rollup_stats()
    slow = query_stats(Activity.objects.all())
    assert fast["counts"] == slow["counts"]
    assert fast["counts"]["total"] == 4 and fast["counts"]["flagged"] == 0
    assert fast["response_times"]["avg"] == slow["response_times"]["avg"]
    assert Rollup.objects.get(type="AUTH", country="FR").count == 4
