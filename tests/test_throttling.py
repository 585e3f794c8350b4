"""Throttles: the seed's scopes, rates with app defaults, 429 + Retry-After, trusted client IP."""

from __future__ import annotations

import pytest
from django.test import RequestFactory, override_settings
from rest_framework.request import Request

from tracking.api.throttling import BurstRateThrottle, SustainedRateThrottle
from tracking.testing.factories import make_activity

pytestmark = pytest.mark.django_db
URL = "/api/tracking/activities/"


def test_scopes_and_default_rates():
    assert BurstRateThrottle.scope == "burst" and SustainedRateThrottle.scope == "sustained"
    # the test settings configure no DEFAULT_THROTTLE_RATES: the app's defaults apply
    assert BurstRateThrottle().get_rate() == "60/min"
    assert SustainedRateThrottle().get_rate() == "1000/hour"


def test_project_rates_win_and_are_read_at_request_time(settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"burst": "5/min"},
    }
    assert BurstRateThrottle().get_rate() == "5/min"
    assert SustainedRateThrottle().get_rate() == "1000/hour"
    with override_settings(TRACKING_THROTTLE_RATES={"sustained": "7/hour"}):
        assert SustainedRateThrottle().get_rate() == "7/hour"


def test_429_after_the_burst_with_retry_after(staff_client, monkeypatch):
    monkeypatch.setattr(BurstRateThrottle, "THROTTLE_RATES", {"burst": "3/min"})
    make_activity()
    codes = [staff_client.get(URL).status_code for _ in range(5)]
    assert codes == [200, 200, 200, 429, 429]
    resp = staff_client.get("/api/tracking/stats/")
    assert resp.status_code == 429
    assert int(resp["Retry-After"]) > 0


def test_users_have_separate_buckets(staff_client, staff_user, django_user_model, monkeypatch):
    from django.contrib.auth.models import Permission
    from rest_framework.test import APIClient

    monkeypatch.setattr(BurstRateThrottle, "THROTTLE_RATES", {"burst": "2/min"})
    other = django_user_model.objects.create_user("other", password="pw", is_staff=True)
    other.user_permissions.set(Permission.objects.filter(content_type__app_label="tracking"))
    c2 = APIClient()
    c2.force_login(other)
    assert [staff_client.get(URL).status_code for _ in range(3)] == [200, 200, 429]
    assert c2.get(URL).status_code == 200


def _anon_request(xff: str, remote: str = "203.0.113.9") -> Request:
    from django.contrib.auth.models import AnonymousUser

    raw = RequestFactory().get(URL, HTTP_X_FORWARDED_FOR=xff, REMOTE_ADDR=remote)
    raw.user = AnonymousUser()
    request = Request(raw)
    request._user = AnonymousUser()
    return request


def test_rotating_forged_x_forwarded_for_does_not_evade_the_limit(monkeypatch):
    monkeypatch.setattr(BurstRateThrottle, "THROTTLE_RATES", {"burst": "3/min"})
    allowed = [
        BurstRateThrottle().allow_request(_anon_request(f"198.51.100.{i}"), None) for i in range(8)
    ]
    assert allowed == [True, True, True, False, False, False, False, False]
    # another real client still has its own bucket
    assert BurstRateThrottle().allow_request(_anon_request("1.1.1.1", remote="203.0.113.10"), None)


def test_trusted_proxy_forwarded_address_is_used(settings, monkeypatch):
    settings.TRACKING_TRUSTED_PROXIES = ["10.0.0.0/8"]
    monkeypatch.setattr(BurstRateThrottle, "THROTTLE_RATES", {"burst": "1/min"})
    t = BurstRateThrottle()
    assert t.get_ident(_anon_request("198.51.100.7", remote="10.0.0.1")) == "198.51.100.7"
    assert BurstRateThrottle().allow_request(_anon_request("198.51.100.7", remote="10.0.0.1"), None)
    assert not BurstRateThrottle().allow_request(
        _anon_request("198.51.100.7", remote="10.0.0.2"), None
    )
    assert BurstRateThrottle().allow_request(_anon_request("198.51.100.8", remote="10.0.0.1"), None)


def test_system_checks_for_api_settings(settings):
    from tracking.checks import check_api_settings

    assert check_api_settings() == []
    settings.TRACKING_THROTTLE_RATES = {"burst": "lots"}
    assert [e.id for e in check_api_settings()] == ["tracking.E031"]
    settings.TRACKING_THROTTLE_RATES = "60/min"
    assert "tracking.E030" in [e.id for e in check_api_settings()]
    settings.TRACKING_THROTTLE_RATES = {"burst": "60/min"}
    settings.TRACKING_MAX_PAGE_SIZE = 0
    assert "tracking.E032" in [e.id for e in check_api_settings()]
    settings.TRACKING_MAX_PAGE_SIZE = 500
    settings.TRACKING_COUNT_LIMIT = 100
    assert [e.id for e in check_api_settings()] == ["tracking.W030"]


def test_anonymous_clients_are_throttled_by_trusted_ip_over_http(api_client, monkeypatch):
    """Refusals are rate limited too, and rotating forged X-Forwarded-For buys nothing."""
    monkeypatch.setattr(BurstRateThrottle, "THROTTLE_RATES", {"burst": "3/min"})
    codes = [
        api_client.get(URL, HTTP_X_FORWARDED_FOR=f"198.51.100.{i}").status_code for i in range(6)
    ]
    assert codes == [403, 403, 403, 429, 429, 429]
    assert 200 not in codes


def test_token_guessing_is_throttled(api_client, monkeypatch):
    monkeypatch.setattr(BurstRateThrottle, "THROTTLE_RATES", {"burst": "2/min"})
    codes = []
    for i in range(4):
        api_client.credentials(HTTP_AUTHORIZATION=f"Token guess{i}")
        codes.append(api_client.get(URL).status_code)
    assert codes[:2] == [403, 403] and codes[2:] == [429, 429]


def test_authenticated_requests_are_counted_once(staff_client, monkeypatch):
    monkeypatch.setattr(BurstRateThrottle, "THROTTLE_RATES", {"burst": "4/min"})
    assert [staff_client.get(URL).status_code for _ in range(5)] == [200, 200, 200, 200, 429]


def test_warning_without_token_app(settings):
    from tracking.checks import check_api_settings

    settings.INSTALLED_APPS = [
        a for a in settings.INSTALLED_APPS if a != "rest_framework.authtoken"
    ]
    assert [e.id for e in check_api_settings()] == ["tracking.W031"]
