"""Who reaches what: anonymous, non-staff, staff without permissions, and per-action permissions."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tracking.models import Activity
from tracking.testing.factories import make_activity

pytestmark = pytest.mark.django_db


def endpoints(pk):
    base = "/api/tracking/"
    return [
        ("get", f"{base}activities/"),
        ("get", f"{base}activities/{pk}/"),
        ("delete", f"{base}activities/{pk}/delete/"),
        ("patch", f"{base}activities/{pk}/flag/"),
        ("get", f"{base}stats/"),
        ("get", f"{base}activities/export/"),
    ]


def grant(user, *codenames):
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="tracking", codename__in=codenames)
    )
    # has_perm caches permissions on the instance
    for attr in ("_perm_cache", "_user_perm_cache"):
        user.__dict__.pop(attr, None)


def test_anonymous_gets_403_everywhere(api_client):
    a = make_activity()
    for method, url in endpoints(a.pk):
        resp = getattr(api_client, method)(url)
        assert resp.status_code == 403, (method, url)
        assert "results" not in resp.json()
    assert Activity.objects.filter(pk=a.pk).exists()


def test_bad_token_is_refused(api_client, settings):
    api_client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    # Session authentication first (the project's order): DRF answers 403, no challenge.
    resp = api_client.get("/api/tracking/activities/")
    assert resp.status_code == 403 and resp.json()["detail"] == "Invalid token."
    # Token first: 401 with the challenge.
    settings.REST_FRAMEWORK = {
        "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.TokenAuthentication"]
    }
    resp = api_client.get("/api/tracking/activities/")
    assert resp.status_code == 401 and resp["WWW-Authenticate"] == "Token"


def test_non_staff_gets_403_even_with_every_permission(plain_user, api_client):
    grant(plain_user, "view_activity", "delete_activity", "review_activity", "export_activity")
    a = make_activity(user=plain_user)  # even their own activity
    api_client.force_login(plain_user)
    for method, url in endpoints(a.pk):
        assert getattr(api_client, method)(url).status_code == 403, (method, url)
    assert Activity.objects.filter(pk=a.pk, flagged=False).exists()


def test_staff_without_view_permission_is_refused(django_user_model, api_client):
    user = django_user_model.objects.create_user("s2", password="pw", is_staff=True)
    a = make_activity()
    api_client.force_login(user)
    for method, url in endpoints(a.pk):
        assert getattr(api_client, method)(url).status_code == 403, (method, url)


def test_view_permission_reads_but_cannot_act(django_user_model, api_client):
    user = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    grant(user, "view_activity")
    a = make_activity()
    api_client.force_login(user)
    assert api_client.get("/api/tracking/activities/").status_code == 200
    assert api_client.get(f"/api/tracking/activities/{a.pk}/").status_code == 200
    assert api_client.get("/api/tracking/stats/").status_code == 200
    assert api_client.delete(f"/api/tracking/activities/{a.pk}/delete/").status_code == 403
    assert api_client.patch(f"/api/tracking/activities/{a.pk}/flag/").status_code == 403
    assert api_client.get("/api/tracking/activities/export/").status_code == 403
    a.refresh_from_db()
    assert not a.flagged
    grant(user, "review_activity")
    assert api_client.patch(f"/api/tracking/activities/{a.pk}/flag/").status_code == 200
    grant(user, "export_activity")
    assert api_client.get("/api/tracking/activities/export/").status_code == 200
    grant(user, "delete_activity")
    assert api_client.delete(f"/api/tracking/activities/{a.pk}/delete/").status_code == 204


def test_token_authentication_is_accepted(staff_user):
    token = Token.objects.create(user=staff_user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    make_activity()
    resp = client.get("/api/tracking/activities/")
    assert resp.status_code == 200 and resp.json()["count"] == 1


def test_works_when_project_configures_no_authentication(staff_user, settings):
    settings.REST_FRAMEWORK = {"DEFAULT_AUTHENTICATION_CLASSES": []}
    token = Token.objects.create(user=staff_user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert client.get("/api/tracking/activities/").status_code == 200
    session = APIClient()
    session.force_login(staff_user)
    assert session.get("/api/tracking/stats/").status_code == 200
    assert APIClient().get("/api/tracking/activities/").status_code in (401, 403)


def test_unknown_id_is_404_not_500(staff_client):
    import uuid

    pk = uuid.uuid4()
    assert staff_client.get(f"/api/tracking/activities/{pk}/").status_code == 404
    assert staff_client.patch(f"/api/tracking/activities/{pk}/flag/").status_code == 404
    assert staff_client.delete(f"/api/tracking/activities/{pk}/delete/").status_code == 404
    assert staff_client.get("/api/tracking/activities/not-a-uuid/").status_code == 404


def test_inactive_staff_is_refused(staff_user, api_client):
    api_client.force_login(staff_user)
    staff_user.is_active = False
    staff_user.save()
    assert api_client.get("/api/tracking/activities/").status_code == 403
