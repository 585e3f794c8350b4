"""Access control on every endpoint: staff only, object-level checks (no IDOR), permission-gated
delete/review/export, throttling, and the staff-only HTML pages and health endpoint."""

import uuid

import pytest
from django.contrib.auth.models import Permission
from django.test import override_settings
from rest_framework.test import APIClient

from tracking.integrity.sealing import seal_pending
from tracking.integrity.verify import verify
from tracking.models import Activity, Tombstone
from tracking.testing.factories import make_activity

pytestmark = pytest.mark.django_db

API = "/api/tracking/"


def endpoints(pk) -> list[tuple[str, str, dict]]:
    return [
        ("get", f"{API}activities/", {}),
        ("get", f"{API}activities/{pk}/", {}),
        ("get", f"{API}stats/", {}),
        ("get", f"{API}activities/export/?format=json", {}),
        ("patch", f"{API}activities/{pk}/flag/", {"review_status": "confirmed"}),
        ("delete", f"{API}activities/{pk}/delete/", {}),
    ]


def call(client, method, url, data):
    if method == "patch":
        return client.patch(url, data, format="json")
    return getattr(client, method)(url)


def user_with(django_user_model, name, *codenames, staff=True):
    user = django_user_model.objects.create_user(name, f"{name}@example.com", "pw", is_staff=staff)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="tracking", codename__in=codenames)
    )
    return user


def client_for(user) -> APIClient:
    c = APIClient()
    c.force_authenticate(user)
    return c


@pytest.fixture
def two_users_rows(django_user_model):
    alice = django_user_model.objects.create_user("alice", password="pw")
    bob = django_user_model.objects.create_user("bob", password="pw")
    return alice, bob, make_activity(user=alice), make_activity(user=bob)


def test_anonymous_is_refused_everywhere(two_users_rows):
    _, _, mine, _ = two_users_rows
    for method, url, data in endpoints(mine.pk):
        resp = call(APIClient(), method, url, data)
        assert resp.status_code in (401, 403), (method, url, resp.status_code)
    assert Activity.objects.filter(pk=mine.pk, flagged=False).exists()


def test_non_staff_cannot_reach_even_their_own_nor_anyone_elses_activity(two_users_rows):
    alice, bob, mine, theirs = two_users_rows
    # Even holding every tracking permission, a non-staff user is refused (no IDOR).
    alice.user_permissions.set(Permission.objects.filter(content_type__app_label="tracking"))
    c = client_for(alice)
    for row in (mine, theirs):
        for method, url, data in endpoints(row.pk):
            resp = call(c, method, url, data)
            assert resp.status_code == 403, (method, url, resp.status_code)
    assert Activity.objects.count() == 2
    assert not Activity.objects.filter(review_status="confirmed").exists()


def test_staff_without_view_permission_is_refused(django_user_model, two_users_rows):
    _, _, mine, _ = two_users_rows
    c = client_for(user_with(django_user_model, "nostaffperm"))
    for method, url, data in endpoints(mine.pk):
        assert call(c, method, url, data).status_code == 403, url


def test_delete_needs_the_delete_permission_and_leaves_a_tombstone(django_user_model):
    row = make_activity()
    seal_pending()
    viewer = client_for(user_with(django_user_model, "viewer", "view_activity", "review_activity"))
    assert viewer.delete(f"{API}activities/{row.pk}/delete/").status_code == 403
    assert Activity.objects.filter(pk=row.pk).exists()
    deleter = client_for(
        user_with(django_user_model, "deleter", "view_activity", "delete_activity")
    )
    assert deleter.delete(f"{API}activities/{uuid.uuid4()}/delete/").status_code == 404
    assert deleter.delete(f"{API}activities/{row.pk}/delete/").status_code in (200, 204)
    assert not Activity.objects.filter(pk=row.pk).exists()
    t = Tombstone.objects.get(activity_id=row.pk)
    assert t.deleted_by == "deleter" and t.reason == "api"
    assert verify().ok  # the legitimate deletion verifies


def test_review_needs_the_review_permission(django_user_model):
    row = make_activity()
    url = f"{API}activities/{row.pk}/flag/"
    viewer = client_for(user_with(django_user_model, "viewer", "view_activity", "delete_activity"))
    assert viewer.patch(url, {"review_status": "confirmed"}, format="json").status_code == 403
    assert Activity.objects.get(pk=row.pk).review_status == "open"
    reviewer = client_for(
        user_with(django_user_model, "reviewer", "view_activity", "review_activity")
    )
    assert reviewer.patch(url, {"review_status": "confirmed"}, format="json").status_code == 200
    row = Activity.objects.get(pk=row.pk)
    assert row.review_status == "confirmed" and row.reviewed_by.username == "reviewer"
    seal_pending()
    assert verify().ok  # review state is outside the sealed content


def test_export_needs_the_explicit_export_permission(django_user_model):
    make_activity()
    viewer = client_for(
        user_with(
            django_user_model, "viewer", "view_activity", "review_activity", "delete_activity"
        )
    )
    for fmt in ("csv", "json", "ndjson"):
        assert viewer.get(f"{API}activities/export/?format={fmt}").status_code == 403
    exporter = client_for(
        user_with(django_user_model, "exporter", "view_activity", "export_activity")
    )
    resp = exporter.get(f"{API}activities/export/?format=json")
    assert resp.status_code == 200


def test_unknown_object_ids_are_404_never_500(staff_client):
    missing = uuid.uuid4()
    assert staff_client.get(f"{API}activities/{missing}/").status_code == 404
    assert (
        staff_client.patch(
            f"{API}activities/{missing}/flag/", {"flagged": True}, format="json"
        ).status_code
        == 404
    )
    assert staff_client.delete(f"{API}activities/{missing}/delete/").status_code == 404
    assert staff_client.get(f"{API}activities/not-a-uuid/").status_code == 404


def test_api_is_throttled_with_retry_after(staff_user):
    c = client_for(staff_user)
    with override_settings(TRACKING_THROTTLE_RATES={"burst": "3/min", "sustained": "1000/hour"}):
        codes = [c.get(f"{API}activities/").status_code for _ in range(5)]
        assert codes[:3] == [200, 200, 200] and codes[3] == 429
        resp = c.get(f"{API}stats/")
        assert resp.status_code == 429 and int(resp["Retry-After"]) > 0


def test_anonymous_throttle_is_not_bypassed_by_forged_forwarded_for():
    c = APIClient()
    with override_settings(TRACKING_THROTTLE_RATES={"burst": "3/min", "sustained": "1000/hour"}):
        codes = [
            c.get(f"{API}activities/", HTTP_X_FORWARDED_FOR=f"203.0.113.{i}").status_code
            for i in range(6)
        ]
    assert 429 in codes[3:]


@pytest.mark.parametrize("page", ["/admin/tracking/activity/", "/api/tracking/dashboard/"])
def test_html_pages_are_staff_only(client, django_user_model, page):
    make_activity()
    assert client.get(page).status_code in (302, 401, 403)
    client.force_login(django_user_model.objects.create_user("plainx", password="pw"))
    assert client.get(page).status_code in (302, 403)
    client.force_login(user_with(django_user_model, "staffer", "view_activity"))
    assert client.get(page).status_code == 200


def test_admin_is_read_only_for_recorded_activities(client, staff_user):
    row = make_activity()
    client.force_login(staff_user)
    resp = client.post(f"/admin/tracking/activity/{row.pk}/change/", {"city": "Changed"})
    assert resp.status_code in (302, 403, 200)
    assert Activity.objects.get(pk=row.pk).city == row.city
    assert client.get("/admin/tracking/activity/add/").status_code == 403


def test_health_endpoint_is_staff_only(client, django_user_model):
    assert client.get(f"{API}health/").status_code == 401
    client.force_login(django_user_model.objects.create_user("plainy", password="pw"))
    assert client.get(f"{API}health/").status_code == 403


@pytest.mark.parametrize("code", [401, 403])
def test_failed_access_decisions_of_tracked_views_are_recorded(client, code):
    resp = client.get(f"/t/rec/status/{code}/", REMOTE_ADDR="81.2.69.10")
    assert resp.status_code == code
    row = Activity.objects.get(endpoint=f"/t/rec/status/{code}/")
    assert (row.status, row.ip_address, row.method) == (code, "81.2.69.10", "GET")
    assert row.timestamp.utcoffset().total_seconds() == 0
    seal_pending()
    assert verify().ok
