"""Finding 9: weak seal and hash keys are refused by `check --deploy`, `doctor` and health."""

from __future__ import annotations

import base64
import os

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from tracking.checks import check_keys
from tracking.integrity.macs import key_problem

from .integrity_helpers import run_tracking

STRONG = base64.urlsafe_b64encode(os.urandom(32)).decode()
WEAK = [
    "a",
    "test-seal-key-not-secret",
    "correct horse battery staple",  # a passphrase, not base64 of 32 bytes
    base64.urlsafe_b64encode(b"a" * 32).decode(),  # 32 bytes, one value
    base64.urlsafe_b64encode(os.urandom(16)).decode(),  # random but 16 bytes
    b"short",
    12345,
]


@pytest.mark.parametrize("key", WEAK)
def test_weak_keys_have_a_problem(key):
    assert key_problem(key)


def test_generated_keys_pass():
    assert key_problem(STRONG) is None
    assert key_problem(os.urandom(32)) is None


@pytest.mark.parametrize("key", WEAK[:5])
def test_weak_seal_key_is_a_system_check_error_and_never_echoed(key):
    with override_settings(TRACKING_SEAL_KEYS=[STRONG, key]):
        errors = check_keys()
    assert [e.id for e in errors] == ["tracking.E004"]
    assert "TRACKING_SEAL_KEYS[1]" in errors[0].msg
    assert len(key) < 4 or key not in errors[0].msg


@pytest.mark.parametrize("key", WEAK[:5])
def test_weak_hash_key_is_a_system_check_error(key):
    with override_settings(TRACKING_HASH_KEY=key):
        assert [e.id for e in check_keys()] == ["tracking.E005"]


def test_check_deploy_fails_on_a_weak_seal_key():
    with override_settings(TRACKING_SEAL_KEYS=["a"]), pytest.raises(SystemCheckError) as exc:
        call_command("check", "--deploy", "--tag", "security")
    assert "tracking.E004" in str(exc.value)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "overrides",
    [{"TRACKING_SEAL_KEYS": ["a"]}, {"TRACKING_HASH_KEY": "weak-hash-key"}],
)
def test_doctor_is_unhealthy_with_a_weak_key(overrides):
    with override_settings(**overrides):
        code, out = run_tracking("doctor")
    assert code == 1 and ("random bytes" in out or "not urlsafe base64" in out)
