"""`manage.py tracking doctor [--json]`."""

import json
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

import pytest
from django.test import override_settings

from tracking.integrity.sealing import seal_pending
from tracking.testing.factories import make_activities

from .integrity_helpers import run_tracking

UTC = dt_timezone.utc

pytestmark = pytest.mark.django_db


def test_doctor_reports_a_healthy_setup(spool_dir):
    make_activities(2)
    seal_pending()
    code, out = run_tracking("doctor")
    assert code == 0, out
    assert "Status: OK" in out
    assert "Spool: 0 events" in out
    assert "Writer (this process): queue 0/" in out and "dropped 0" in out
    assert "Sealing: 0 unsealed" in out and "sealed through seq 2" in out
    assert "Keys: 1 encryption" in out and "1 seal" in out
    assert "Chain head:" in out


def test_doctor_json_and_exit_code_when_unhealthy():
    make_activities(2, now=datetime.now(UTC) - timedelta(days=2))
    with override_settings(TRACKING_HEALTH_MAX_UNSEALED_AGE=60):
        code, out = run_tracking("doctor", "--json")
    assert code == 1
    data = json.loads(out)
    assert data["status"] == "unhealthy" and data["sealing"]["unsealed"] == 2
    with override_settings(TRACKING_HEALTH_MAX_UNSEALED_AGE=60):
        code, out = run_tracking("doctor")
    assert code == 1 and "PROBLEM:" in out and "Status: UNHEALTHY" in out


def test_doctor_with_no_seal_key_exits_non_zero():
    with override_settings(TRACKING_SEAL_KEYS=[]):
        code, out = run_tracking("doctor")
    assert code == 1 and "seal keys" in out


def test_seal_command_prints_the_chain_head():
    make_activities(3)
    code, out = run_tracking("seal")
    assert code == 0
    assert "Sealed 3 activities; 0 left unsealed." in out
    assert "Chain head: seq 3 " in out
    head = out.split("Chain head: seq 3 ")[1].strip()
    assert run_tracking("verify", "--anchor", head)[0] == 0
    assert run_tracking("seal", "--limit", "0")[0] == 2
