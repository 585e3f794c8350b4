"""The example project: its settings load and pass the checks; its views record activities."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import override_settings

from tracking.models import Activity
from tracking.pipeline import writer

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "example"
if str(EXAMPLE) not in sys.path:
    sys.path.insert(0, str(EXAMPLE))

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def example_urls(settings):
    """Serve the example's URLconf with its app installed, under the test settings, with the
    example's TrackingMiddleware and the auth signals it relies on."""
    settings.INSTALLED_APPS = [*settings.INSTALLED_APPS, "shop"]
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "tracking.middleware.TrackingMiddleware"]
    settings.TRACKING_AUTH_SIGNALS = True
    with override_settings(ROOT_URLCONF="exampleproject.urls"):
        yield


@pytest.fixture
def shopper(django_user_model):
    return django_user_model.objects.create_user("shopper", "s@example.com", "s3cret-pw!")


def one(**filters) -> Activity:
    rows = list(Activity.objects.filter(**filters))
    assert len(rows) == 1, rows
    return rows[0]


def _example_env(tmp_path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKING_", "DJANGO_"))}
    env.pop("DATABASE_URL", None)
    env.pop("GEOIP_PATH", None)
    env.update(EXAMPLE_VAR_DIR=str(tmp_path / "var"), PYTHONPATH=str(ROOT), **extra)
    return env


def _manage(tmp_path, *args, **env):
    return subprocess.run(
        [sys.executable, str(EXAMPLE / "manage.py"), *args],
        env=_example_env(tmp_path, **env),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.django_db(transaction=False)
def test_example_settings_load_and_pass_checks(tmp_path):
    result = _manage(tmp_path, "check", "--fail-level", "ERROR")
    assert result.returncode == 0, result.stderr
    # dev keys were generated once, outside git, readable by the owner only
    keys = tmp_path / "var" / "dev-keys.json"
    assert keys.exists() and oct(keys.stat().st_mode & 0o777) == "0o600"
    first = keys.read_text()
    code = (
        "from django.conf import settings as s; import json; print(json.dumps({"
        "'db': s.DATABASES['default'], 'geo': s.GEOIP_PATH, 'proxies': s.TRACKING_TRUSTED_PROXIES,"
        "'sens': s.SENSITIVE_FIELDS, 'rf': s.REST_FRAMEWORK, 'apps': s.INSTALLED_APPS,"
        "'keys': [len(s.TRACKING_ENCRYPTION_KEYS), len(s.TRACKING_SEAL_KEYS)]}, default=str))"
    )
    out = _manage(tmp_path, "shell", "-c", code)
    assert out.returncode == 0, out.stderr
    conf = json.loads(out.stdout.strip().splitlines()[-1])
    assert conf["db"]["ENGINE"].endswith("sqlite3")
    assert conf["db"]["NAME"] == str(tmp_path / "var" / "db.sqlite3")
    assert conf["db"]["OPTIONS"]["init_command"].startswith("PRAGMA journal_mode=WAL")
    assert conf["db"]["OPTIONS"]["timeout"] == 30
    assert conf["db"]["OPTIONS"]["transaction_mode"] == "IMMEDIATE"
    assert conf["geo"] == str(tmp_path / "var" / "geoip")
    assert conf["proxies"] == []
    assert conf["sens"] == ["password", "token", "secret"]
    assert conf["rf"]["DEFAULT_THROTTLE_RATES"] == {"burst": "60/min", "sustained": "1000/hour"}
    assert conf["rf"]["DEFAULT_AUTHENTICATION_CLASSES"] == [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ]
    for app in ("tracking", "rest_framework.authtoken", "django_filters", "drf_spectacular"):
        assert app in conf["apps"]
    assert conf["keys"] == [1, 1]
    assert keys.read_text() == first  # kept, not regenerated


@pytest.mark.django_db(transaction=False)
def test_example_settings_from_environment(tmp_path):
    code = (
        "from django.conf import settings as s; print(s.DATABASES['default']['ENGINE'], "
        "s.DATABASES['default']['NAME'], s.GEOIP_PATH, ','.join(s.TRACKING_TRUSTED_PROXIES), "
        "len(s.TRACKING_ENCRYPTION_KEYS))"
    )
    out = _manage(
        tmp_path,
        "shell",
        "-c",
        code,
        DATABASE_URL="postgres://u:p@db.example:5432/shop",
        GEOIP_PATH="/srv/geoip",
        TRACKING_TRUSTED_PROXIES="10.0.0.0/8, 192.0.2.1",
        TRACKING_ENCRYPTION_KEYS="a2V5LWEtMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDA=,"
        "a2V5LWItMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDA=",
        TRACKING_SEAL_KEYS="seal-one",
        DJANGO_SECRET_KEY="x" * 50,
    )
    assert out.returncode == 0, out.stderr
    engine, name, geo, proxies, nkeys = out.stdout.strip().splitlines()[-1].split(" ")
    assert engine == "django.db.backends.postgresql" and name == "shop"
    assert geo == "/srv/geoip" and proxies == "10.0.0.0/8,192.0.2.1" and nkeys == "2"
    assert not (tmp_path / "var" / "dev-keys.json").exists()


def test_login_view_records_auth_success_and_failure(client, shopper):
    assert client.get("/accounts/login/").status_code == 200
    # Django's LoginView: a wrong password is a form error answered 200, a failure all the same.
    bad = client.post("/accounts/login/", {"username": "shopper", "password": "wrong"})
    assert bad.status_code == 200 and b"Wrong username or password" in bad.content
    ok = client.post("/accounts/login/", {"username": "shopper", "password": "s3cret-pw!"})
    assert ok.status_code == 302
    rows = list(Activity.objects.filter(type="AUTH", method="POST").order_by("timestamp"))
    assert [(r.status, r.outcome) for r in rows] == [(200, "failure"), (302, "success")]
    assert rows[1].user_id == shopper.pk and rows[1].username == "shopper"
    # The failed attempt names the account it tried and is attached to it, as an import of the
    # same record would be; failed events never teach that user's profile.
    assert rows[0].username == "shopper" and rows[0].user_id == shopper.pk
    assert rows[1].session_id and len(rows[1].session_id) == 64
    assert client.session.session_key not in rows[1].session_id
    for row in rows:
        assert row.params["body"]["password"] != "s3cret-pw!"
        assert "wrong" not in json.dumps(row.params)


def test_json_login_and_csrf_for_forms(shopper):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    form = client.post("/accounts/login/", {"username": "shopper", "password": "s3cret-pw!"})
    assert form.status_code == 403  # a form post without the CSRF token is refused
    resp = client.post(
        "/accounts/login/",
        json.dumps({"username": "shopper", "password": "s3cret-pw!"}),
        content_type="application/json",
    )
    assert resp.status_code == 200 and resp.json()["username"] == "shopper"
    assert one(type="AUTH", status=200).user_id == shopper.pk


def test_payment_view_records_asynchronously(client, shopper):
    client.force_login(shopper)
    resp = client.post(
        "/payments/",
        json.dumps({"amount": "19.99", "currency": "eur", "card_number": "4242424242424242"}),
        content_type="application/json",
    )
    assert resp.status_code == 200 and resp.json()["status"] == "paid"
    assert client.post("/payments/", {"amount": "-1"}).status_code == 400
    assert writer.flush(10)
    rows = list(Activity.objects.filter(type="PAYMENT").order_by("timestamp"))
    assert [r.status for r in rows] == [200, 400]
    assert rows[0].username == "shopper" and rows[0].endpoint == "/payments/"
    assert "4242424242424242" not in json.dumps(rows[0].params)


def test_payment_requires_login(client):
    resp = client.post("/payments/", {"amount": "5"})
    assert resp.status_code == 302 and "/accounts/login/" in resp["Location"]


def test_drf_view_records_the_token_user(client, shopper):
    from rest_framework.test import APIClient

    api = APIClient()
    token = api.post("/api/v1/token/", {"username": "shopper", "password": "s3cret-pw!"}).json()[
        "token"
    ]
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert api.get("/api/v1/orders/").status_code == 200
    assert api.post("/api/v1/orders/", {"product": 7, "qty": 2}, format="json").status_code == 201
    assert api.get("/api/v1/profile/").json()["username"] == "shopper"
    assert writer.flush(10)  # synchronous API rows: in the intake, stored within a round
    rows = list(Activity.objects.filter(type="API").order_by("timestamp"))
    assert [(r.method, r.endpoint, r.status) for r in rows] == [
        ("GET", "/api/v1/orders/", 200),
        ("POST", "/api/v1/orders/", 201),
        ("GET", "/api/v1/profile/", 200),
    ]
    assert all(r.user_id == shopper.pk and r.username == "shopper" for r in rows)
    assert all(token not in json.dumps(r.headers) for r in rows)
    token_row = one(endpoint="/api/v1/token/")
    assert token_row.type == "AUTH" and "s3cret-pw!" not in json.dumps(token_row.params)
    anon = APIClient().get("/api/v1/orders/")
    assert anon.status_code in (401, 403)


def test_password_change_and_report_export(client, shopper):
    client.force_login(shopper)
    bad = client.post("/account/password/", {"old_password": "nope"})
    assert bad.status_code == 400
    ok = client.post(
        "/account/password/",
        {
            "old_password": "s3cret-pw!",
            "new_password1": "An0ther-long-pass",
            "new_password2": "An0ther-long-pass",
        },
    )
    assert ok.status_code == 200
    shopper.refresh_from_db()
    assert shopper.check_password("An0ther-long-pass")
    resp = client.get("/reports/orders/export/")
    assert resp.status_code == 200 and resp["Content-Type"] == "text/csv"
    assert client.get("/reports/secrets/export/").status_code == 404
    assert writer.flush(10)  # synchronous rows: in the intake, stored within a round
    views = Activity.objects.filter(type="ACCOUNT", status__isnull=False).order_by("timestamp")
    assert [r.status for r in views] == [400, 200]
    # The password change itself, recorded from the user model: the field, never its value.
    (change,) = Activity.objects.filter(type="ACCOUNT", status__isnull=True)
    assert change.params["fields"] == ["password"] and change.user_id == shopper.pk
    assert sorted(r.status for r in Activity.objects.filter(type="DATA")) == [200, 404]
    for row in Activity.objects.filter(type="ACCOUNT"):
        text = json.dumps(row.params)
        assert "s3cret-pw!" not in text and "An0ther-long-pass" not in text


def test_admin_and_tracking_api_mounted(client, django_user_model):
    admin = django_user_model.objects.create_superuser("root", "r@example.com", "pw")
    assert client.get("/admin/login/").status_code == 200
    client.force_login(admin)
    assert client.get("/admin/tracking/activity/").status_code == 200
    assert client.get("/api/tracking/activities/").status_code == 200
    assert client.get("/").status_code == 200


# --- step-up (tracking.assess) in the example's payment view -------------------------------


def test_payment_step_up_asks_for_the_password_when_risky(client, shopper, monkeypatch):
    import tracking
    from tracking.respond.assess import AssessedFinding, Assessment

    risky = Assessment(
        risk=0.8,
        tags=("impossible_travel",),
        findings=(AssessedFinding("geo", "impossible_travel", 0.8, "high", "too fast", True),),
    )
    monkeypatch.setattr(tracking, "assess", lambda request, **kw: risky)
    client.force_login(shopper)
    pay = {"amount": "19.99", "currency": "EUR"}
    asked = client.post("/payments/", json.dumps(pay), content_type="application/json")
    assert asked.status_code == 403
    assert asked.json() == {"detail": "confirm your password", "step_up": True,
                            "reasons": ["too fast"]}  # fmt: skip
    page = client.post("/payments/", pay)
    assert page.status_code == 403 and b'name="confirm_password"' in page.content
    confirmed = client.post(
        "/payments/",
        json.dumps({**pay, "confirm_password": "s3cret-pw!"}),
        content_type="application/json",
    )
    assert confirmed.status_code == 200 and confirmed.json()["status"] == "paid"


def test_payment_from_a_blocked_address_is_refused(client, shopper):
    from tracking.respond import blocks

    client.force_login(shopper)
    pay = json.dumps({"amount": "19.99", "currency": "EUR"})
    assert client.post("/payments/", pay, content_type="application/json").status_code == 200
    blocks.create_block("address", address="127.0.0.1", reason="test", seconds=60)
    assert client.post("/payments/", pay, content_type="application/json").status_code == 403
