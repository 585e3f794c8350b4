"""System checks for keys (tracking.E001–E003)."""

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
