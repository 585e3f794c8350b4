"""api/tracking/health/: staff or token only; 503 when recording is unhealthy."""

import json
import os
import time
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

import pytest
from django.db import DatabaseError
from django.test import override_settings

from tracking import health
from tracking.integrity.sealing import seal_pending
from tracking.testing.factories import make_activities

UTC = dt_timezone.utc

pytestmark = pytest.mark.django_db

URL = "/api/tracking/health/"
TOKEN = "health-token-for-tests-0123456789"


def _segment(folder, events: int, age: float) -> None:
    path = folder / f"seg-{time.time_ns():020d}-1-1.ndjson"
    path.write_text(
        "".join(json.dumps({"type": "AUTH", "id": str(i)}) + "\n" for i in range(events))
    )
    then = time.time() - age
    os.utime(path, (then, then))


def test_anonymous_gets_401_and_non_staff_403(client, plain_user):
    assert client.get(URL).status_code == 401
    client.force_login(plain_user)
    assert client.get(URL).status_code == 403


def test_staff_gets_the_full_report(client, staff_user, spool_dir):
    make_activities(3)
    seal_pending()
    client.force_login(staff_user)
    resp = client.get(URL)
    assert resp.status_code == 200, resp.content
    data = resp.json()
    assert data["status"] == "ok" and data["healthy"] is True and data["problems"] == []
    assert data["sealing"]["unsealed"] == 0 and data["sealing"]["sealed_through"] == 3
    assert (
        data["sealing"]["newest_seal_age"] is not None and data["sealing"]["newest_seal_age"] < 60
    )
    assert data["spool"]["events"] == 0
    assert (data["spool_size"], data["unsealed"], data["dropped"], data["keys_configured"]) == (
        0,
        0,
        0,
        True,
    )
    assert data["queue_depth"] == data["writer"]["queue_depth"]
    assert data["newest_seal_age"] == data["sealing"]["newest_seal_age"]
    assert {"queue_depth", "failed", "dropped"} <= set(data["writer"])
    assert data["keys"]["encryption_keys"] == 1 and data["keys"]["seal_keys"] == 1
    assert data["keys"]["seal_key_id"] and data["keys"]["encryption_key_id"]
    assert "no-cache" in resp.headers.get("Cache-Control", "") or "max-age=0" in resp.headers.get(
        "Cache-Control", ""
    )
    # No key material is ever served.
    assert "dGVzdHMtb25seS1zZWFsLWtleS0wMTIzNDU2Nzg5YWJj" not in resp.content.decode()


def test_monitoring_token(client):
    with override_settings(TRACKING_HEALTH_TOKEN=TOKEN):
        assert client.get(URL, HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200
        assert client.get(URL, HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
        assert client.get(URL, HTTP_AUTHORIZATION=TOKEN).status_code == 401
    # No token configured: a bearer value never opens it.
    assert client.get(URL, HTTP_AUTHORIZATION="Bearer ").status_code == 401


def test_drf_token_of_a_staff_user(client, staff_user):
    from rest_framework.authtoken.models import Token

    token = Token.objects.create(user=staff_user)
    assert client.get(URL, HTTP_AUTHORIZATION=f"Token {token.key}").status_code == 200


def test_old_unsealed_rows_make_it_unhealthy(client, staff_user):
    make_activities(2, now=datetime.now(UTC) - timedelta(hours=3))
    client.force_login(staff_user)
    with override_settings(TRACKING_HEALTH_MAX_UNSEALED_AGE=3600):
        resp = client.get(URL)
    assert resp.status_code == 503
    data = resp.json()
    assert data["status"] == "unhealthy"
    assert (
        data["sealing"]["unsealed"] == 2 and data["sealing"]["oldest_unsealed_age"] > 3 * 3600 - 120
    )
    assert any("unsealed" in p for p in data["problems"])
    seal_pending()
    assert client.get(URL).status_code == 200


def test_too_many_unsealed_rows_make_it_unhealthy(staff_user):
    make_activities(3)
    with override_settings(TRACKING_HEALTH_MAX_UNSEALED_ROWS=2):
        data = health.collect()
    assert not data["healthy"] and any("3 activities are unsealed" in p for p in data["problems"])


def test_events_stuck_in_the_spool_make_it_unhealthy(spool_dir):
    _segment(spool_dir, 4, age=10)
    data = health.collect()
    assert data["spool"]["events"] == 4 and data["healthy"]
    _segment(spool_dir, 2, age=3600)
    with override_settings(TRACKING_HEALTH_MAX_SPOOL_AGE=300):
        data = health.collect()
    assert data["spool"]["events"] == 6 and data["spool"]["oldest_age"] >= 3600 - 5
    assert not data["healthy"] and any("spool" in p for p in data["problems"])
    assert data["spool_size"] == 6 and data["spool_oldest_age"] >= 3600 - 5


def test_dropped_events_are_unhealthy_and_failures_a_warning(monkeypatch):
    from tracking.pipeline import writer

    monkeypatch.setattr(
        writer, "stats", lambda: {"queue_depth": 7, "failed": 2, "dropped": 1, "queue_size": 10}
    )
    data = health.collect()
    assert data["writer"]["queue_depth"] == 7
    assert any("dropped 1" in p for p in data["problems"])
    assert any("failed to write 2" in w for w in data["warnings"])


def test_missing_keys_are_unhealthy():
    with override_settings(TRACKING_SEAL_KEYS=[], TRACKING_ENCRYPTION_KEYS=[]):
        data = health.collect()
    assert not data["healthy"]
    assert data["keys"]["seal_keys"] == 0 and data["keys"]["seal_key_id"] is None
    assert any("seal keys" in p for p in data["problems"])
    assert any("encryption keys" in p for p in data["problems"])


def test_database_unavailable_is_reported_not_raised(monkeypatch):
    def down(now, *args, **kwargs):
        raise DatabaseError("connection refused")

    monkeypatch.setattr(health, "_sealing", down)
    data = health.collect()
    assert data["database"].startswith("unavailable") and not data["healthy"]


def test_missing_spool_or_writer_module_is_tolerated(monkeypatch):
    real = health.importlib.import_module

    def fake(name):
        if name in ("tracking.pipeline.spool", "tracking.pipeline.writer"):
            raise ImportError(name)
        return real(name)

    monkeypatch.setattr(health.importlib, "import_module", fake)
    data = health.collect()
    assert data["spool"] is None and data["writer"] is None and data["healthy"]


def test_post_is_refused(client, staff_user):
    client.force_login(staff_user)
    assert client.post(URL).status_code == 405


def test_system_check_warns_when_spool_dir_is_not_writable(tmp_path):
    from django.core import checks

    blocked = tmp_path / "ro"
    blocked.mkdir()
    blocked.chmod(0o500)
    try:
        with override_settings(TRACKING_SPOOL_DIR=str(blocked / "spool")):
            ids = {m.id for m in checks.run_checks()}
        if os.geteuid() == 0:  # root writes anywhere: the check correctly stays quiet
            assert "tracking.W070" not in ids
        else:
            assert "tracking.W070" in ids
        a_file = tmp_path / "file"
        a_file.write_text("x")
        with override_settings(TRACKING_SPOOL_DIR=str(a_file / "spool")):
            assert "tracking.W070" in {m.id for m in checks.run_checks()}
        with override_settings(TRACKING_SPOOL_DIR=str(tmp_path / "new")):
            assert "tracking.W070" not in {m.id for m in checks.run_checks()}
    finally:
        blocked.chmod(0o700)
