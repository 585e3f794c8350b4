"""Finding 10: docs pages staff-only by setting; health needs view_activity and is throttled;
refused callers (403) are throttled too."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.test import override_settings

pytestmark = pytest.mark.django_db
API = "/api/tracking/"
RATES = {"burst": "4/min", "sustained": "1000/hour"}


def staff(django_user_model, name, *perms):
    user = django_user_model.objects.create_user(name, password="pw", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="tracking", codename__in=perms)
    )
    return user


@pytest.mark.parametrize("page", ["schema/", "docs/", "redoc/"])
def test_docs_are_public_by_default(client, page):
    assert client.get(API + page).status_code == 200


@pytest.mark.parametrize("page", ["schema/", "docs/", "redoc/"])
def test_a_setting_makes_the_docs_staff_only(client, django_user_model, page):
    with override_settings(TRACKING_API_DOCS_STAFF_ONLY=True):
        assert client.get(API + page).status_code in (401, 403)
        client.force_login(django_user_model.objects.create_user("plain", password="pw"))
        assert client.get(API + page).status_code == 403
        client.force_login(staff(django_user_model, "docsreader"))
        assert client.get(API + page).status_code == 200


def test_the_docs_setting_is_validated():
    from tracking.checks import check_api_settings

    with override_settings(TRACKING_API_DOCS_STAFF_ONLY="yes"):
        assert "tracking.E033" in [e.id for e in check_api_settings()]


def test_health_needs_view_activity(client, django_user_model):
    client.force_login(staff(django_user_model, "bare-staff"))
    assert client.get(API + "health/").status_code == 403
    client.force_login(staff(django_user_model, "reader", "view_activity"))
    assert client.get(API + "health/").status_code in (200, 503)


def test_health_token_still_works(client):
    token = "t" * 32
    with override_settings(TRACKING_HEALTH_TOKEN=token):
        resp = client.get(API + "health/", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert resp.status_code in (200, 503) and "healthy" in resp.json()


@pytest.mark.parametrize("who", ["anonymous", "plain", "staff-without-permission", "reader"])
def test_health_is_throttled_for_every_caller(client, django_user_model, who):
    if who == "plain":
        client.force_login(django_user_model.objects.create_user("p", password="pw"))
    elif who == "staff-without-permission":
        client.force_login(staff(django_user_model, "s"))
    elif who == "reader":
        client.force_login(staff(django_user_model, "r", "view_activity"))
    with override_settings(TRACKING_THROTTLE_RATES=RATES):
        codes = [client.get(API + "health/").status_code for _ in range(6)]
    assert 429 not in codes[:4] and codes[4:] == [429, 429]
    with override_settings(TRACKING_THROTTLE_RATES=RATES):
        assert int(client.get(API + "health/")["Retry-After"]) >= 1


@pytest.mark.parametrize("url", ["activities/", "stats/", "activities/export/", "schema/"])
def test_refused_signed_in_users_are_throttled(client, django_user_model, url):
    client.force_login(django_user_model.objects.create_user("nosy", password="pw"))
    with override_settings(TRACKING_THROTTLE_RATES=RATES, TRACKING_API_DOCS_STAFF_ONLY=True):
        codes = [client.get(API + url).status_code for _ in range(6)]
    assert codes[:4] == [403] * 4 and codes[4:] == [429, 429]


@pytest.mark.parametrize("page", ["dashboard/", "dashboard/feed/", "dashboard/charts/"])
@pytest.mark.parametrize("who", ["anonymous", "plain"])
def test_dashboard_refusals_are_throttled(client, django_user_model, page, who):
    if who == "plain":
        client.force_login(django_user_model.objects.create_user("p2", password="pw"))
    with override_settings(TRACKING_THROTTLE_RATES=RATES):
        codes = [client.get(API + page).status_code for _ in range(6)]
    assert 429 not in codes[:4] and codes[4:] == [429, 429]


def test_dashboard_readers_are_not_throttled_by_their_polling(client, django_user_model):
    client.force_login(staff(django_user_model, "poller", "view_activity"))
    with override_settings(TRACKING_THROTTLE_RATES=RATES):
        codes = [client.get(API + "dashboard/feed/").status_code for _ in range(8)]
    assert codes == [200] * 8
