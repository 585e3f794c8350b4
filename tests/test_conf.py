"""The settings accessor: defaults, prefixes, reload on change, caches cleared."""

from __future__ import annotations

import pytest
from django.test import override_settings

from tracking.conf import DEFAULTS, on_reload, setting_name, tracking_settings


def test_defaults_and_names():
    assert setting_name("QUEUE_SIZE") == "TRACKING_QUEUE_SIZE"
    assert setting_name("SENSITIVE_FIELDS") == "TRACKING_SENSITIVE_FIELDS"
    assert setting_name("DISABLE_GEOLOCATION") == "TRACKING_DISABLE_GEOLOCATION"
    assert setting_name("GEOIP_PATH") == "GEOIP_PATH"
    assert DEFAULTS["TRUSTED_PROXIES"] == [] and DEFAULTS["ASYNC_HANDOFF"] == "thread"
    assert DEFAULTS["DURABLE_HANDOFF"] is False
    assert DEFAULTS["SENSITIVE_FIELDS"] == ["password", "token", "secret"]


def test_override_and_reload():
    assert tracking_settings.QUEUE_SIZE == DEFAULTS["QUEUE_SIZE"]
    with override_settings(TRACKING_QUEUE_SIZE=7):
        assert tracking_settings.QUEUE_SIZE == 7
    assert tracking_settings.QUEUE_SIZE == DEFAULTS["QUEUE_SIZE"]


def test_unknown_setting_is_an_error():
    with pytest.raises(AttributeError):
        tracking_settings.NOPE  # noqa: B018


def test_on_reload_callbacks_run():
    calls = []
    on_reload(lambda: calls.append(1))
    with override_settings(TRACKING_BATCH_SIZE=3):
        pass
    assert len(calls) >= 2


def test_redaction_cache_follows_settings():
    from tracking.redaction import is_sensitive

    assert not is_sensitive("ssn")
    with override_settings(SENSITIVE_FIELDS=["ssn"]):
        assert is_sensitive("ssn") and is_sensitive("password")
    assert not is_sensitive("ssn")


def test_trusted_proxies_cache_follows_settings():
    from django.test import RequestFactory

    from tracking.capture.clientip import client_ip

    r = RequestFactory().get("/", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="81.2.69.1")
    assert client_ip(r) == "10.0.0.1"
    with override_settings(TRACKING_TRUSTED_PROXIES=["10.0.0.0/8"]):
        assert client_ip(r) == "81.2.69.1"
    assert client_ip(r) == "10.0.0.1"


def _alias_errors():
    from django.core.checks import run_checks

    return [m for m in run_checks() if m.id == "tracking.E016"]


def test_seed_alias_is_read_when_the_prefixed_name_is_unset():
    from django.conf import settings

    # tests/settings.py uses the seed spelling SENSITIVE_FIELDS only.
    assert not hasattr(settings, "TRACKING_SENSITIVE_FIELDS")
    with override_settings(SENSITIVE_FIELDS=["ssn"]):
        assert tracking_settings.SENSITIVE_FIELDS == ["ssn"]
    with override_settings(DISABLE_GEOLOCATION=True):
        assert tracking_settings.DISABLE_GEOLOCATION is True
    assert tracking_settings.DISABLE_GEOLOCATION is False


def test_prefixed_names_are_read_and_win_over_the_alias():
    with override_settings(TRACKING_SENSITIVE_FIELDS=["iban"]):
        assert tracking_settings.SENSITIVE_FIELDS == ["iban"]
    with override_settings(TRACKING_DISABLE_GEOLOCATION=True):
        assert tracking_settings.DISABLE_GEOLOCATION is True
    with override_settings(TRACKING_DISABLE_GEOLOCATION=False, DISABLE_GEOLOCATION=True):
        assert tracking_settings.DISABLE_GEOLOCATION is False


def test_prefixed_sensitive_fields_redact():
    from tracking.redaction import is_sensitive

    with override_settings(TRACKING_SENSITIVE_FIELDS=["iban"], SENSITIVE_FIELDS=["iban"]):
        assert is_sensitive("iban")
    assert not is_sensitive("iban")


def test_both_spellings_set_differently_is_a_check_error():
    assert _alias_errors() == []
    with override_settings(TRACKING_SENSITIVE_FIELDS=["password", "token", "secret"]):
        assert _alias_errors() == []  # same value as SENSITIVE_FIELDS: no conflict
    with override_settings(TRACKING_SENSITIVE_FIELDS=["password"]):
        (error,) = _alias_errors()
    assert "TRACKING_SENSITIVE_FIELDS" in error.msg and "SENSITIVE_FIELDS" in error.msg
    with override_settings(TRACKING_DISABLE_GEOLOCATION=True, DISABLE_GEOLOCATION=False):
        (error,) = _alias_errors()
    assert "TRACKING_DISABLE_GEOLOCATION" in error.msg
