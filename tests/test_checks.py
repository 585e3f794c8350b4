"""System checks: keys (tracking.E001–E003) and the Celery hand-off's broker (tracking.W013)."""

import pytest
from django.core import checks

from tracking.checks import check_keys


def ids(messages):
    return {m.id for m in messages}


def test_configured_keys_pass():
    assert not [
        m for m in check_keys() if m.id in {"tracking.E001", "tracking.E002", "tracking.E003"}
    ]


def test_missing_encryption_key_is_an_error(settings):
    settings.TRACKING_ENCRYPTION_KEYS = []
    messages = check_keys()
    assert "tracking.E001" in ids(messages)
    assert all(m.level == checks.ERROR for m in messages)
    assert "tracking keygen" in next(m for m in messages if m.id == "tracking.E001").hint


def test_malformed_encryption_key_names_its_position(settings):
    settings.TRACKING_ENCRYPTION_KEYS = ["dGVzdC1lbmNyeXB0aW9uLWtleS0wMDAwMDAwMDAwMDA=", "short"]
    messages = [m for m in check_keys() if m.id == "tracking.E002"]
    assert len(messages) == 1
    assert "TRACKING_ENCRYPTION_KEYS[1]" in messages[0].msg


def test_missing_seal_key_is_an_error(settings):
    settings.TRACKING_SEAL_KEYS = []
    assert "tracking.E003" in ids(check_keys())


def _celery_app_with(monkeypatch, broker_url):
    import types

    import celery

    app = types.SimpleNamespace(conf=types.SimpleNamespace(broker_url=broker_url))
    proxy = types.SimpleNamespace(_get_current_object=lambda: app)
    monkeypatch.setattr(celery, "current_app", proxy)
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)


def test_celery_handoff_without_a_configured_app_warns(settings, monkeypatch):
    from tracking.checks import check_recording

    settings.TRACKING_ASYNC_HANDOFF = "celery"
    settings.TRACKING_CELERY_APP = None
    _celery_app_with(monkeypatch, None)  # Celery's default app: no broker configured
    warnings = [m for m in check_recording() if m.id == "tracking.W013"]
    assert len(warnings) == 1 and "TRACKING_CELERY_APP" in warnings[0].hint


@pytest.mark.parametrize("how", ["named app", "configured current app", "environment"])
def test_celery_handoff_with_a_configured_app_passes(settings, monkeypatch, how):
    from tracking.checks import check_recording

    settings.TRACKING_ASYNC_HANDOFF = "celery"
    settings.TRACKING_CELERY_APP = "proj.celery.app" if how == "named app" else None
    _celery_app_with(monkeypatch, "redis://127.0.0.1:6379/0" if how.startswith("conf") else None)
    if how == "environment":
        monkeypatch.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
    assert "tracking.W013" not in [m.id for m in check_recording()]
