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


@pytest.mark.parametrize(
    ("broker", "options", "expected"),
    [
        ("redis://127.0.0.1:6379/0", {}, "tracking.W014"),  # kombu's default: one hour
        ("redis://127.0.0.1:6379/0", {"visibility_timeout": 3600}, "tracking.W014"),
        ("rediss://cache:6380/0", {"visibility_timeout": 120}, None),  # + kombu's 100 s sweep
        # 500 s, then kombu's default sweep (10 s x every 10th): up to 600 s, "prompt" no more
        ("redis://127.0.0.1:6379/0", {"visibility_timeout": 501}, "tracking.W014"),
        (
            "redis://127.0.0.1:6379/0",
            {
                "visibility_timeout": 501,
                "unacked_restore_interval": 5,
                "unacked_restore_throttle": 1,
            },
            None,
        ),
        ("sqs://", None, "tracking.W014"),
        ("redis://127.0.0.1:6379/0", {"visibility_timeout": 10}, "tracking.W015"),
        ("amqp://guest:guest@127.0.0.1:5672//", {}, None),  # redelivers on connection loss
        ("pyamqp://rabbit//", None, None),
    ],
)
def test_celery_broker_redelivery_is_prompt(settings, broker, options, expected):
    """W014: a Redis/SQS broker without a short visibility timeout holds a dead worker's
    batch for an hour; W015: one shorter than the task's retry backoff delivers it twice."""
    import types

    from tracking.checks import check_recording

    conf = types.SimpleNamespace(broker_url=broker, broker_transport_options=options)
    settings.TRACKING_ASYNC_HANDOFF = "celery"
    settings.TRACKING_CELERY_APP = types.SimpleNamespace(conf=conf)
    settings.TRACKING_CELERY_CONFIRM_AFTER = 0  # the broker's redelivery alone
    found = [m for m in check_recording() if m.id in ("tracking.W014", "tracking.W015")]
    assert [m.id for m in found] == ([expected] if expected else [])
    if expected:
        assert "visibility_timeout': 120" in found[0].hint and "amqp://" in found[0].hint
        assert "'unacked_restore_throttle': 1" in found[0].hint


@pytest.mark.parametrize(
    ("confirm_after", "expected"),
    [(120, []), (600, []), (601, ["tracking.W014"]), (0, ["tracking.W014"])],
)
def test_confirmation_makes_a_long_visibility_timeout_harmless(settings, confirm_after, expected):
    """With TRACKING_CELERY_CONFIRM_AFTER the publisher sends a dead worker's batch again
    within that many seconds, so kombu's one-hour default no longer holds it back (W014);
    W015 (a batch its worker still holds worked twice) does not depend on it."""
    import types

    from tracking.checks import check_recording

    settings.TRACKING_ASYNC_HANDOFF = "celery"
    settings.TRACKING_CELERY_CONFIRM_AFTER = confirm_after
    ids = ("tracking.W014", "tracking.W015")
    conf = types.SimpleNamespace(broker_url="redis://127.0.0.1:6379/0", broker_transport_options={})
    settings.TRACKING_CELERY_APP = types.SimpleNamespace(conf=conf)
    assert [m.id for m in check_recording() if m.id in ids] == expected
    conf.broker_transport_options = {"visibility_timeout": 10}
    assert [m.id for m in check_recording() if m.id in ids] == ["tracking.W015"]


def test_a_bad_confirmation_delay_is_an_error(settings):
    from tracking.checks import check_integrity_settings

    settings.TRACKING_CELERY_CONFIRM_AFTER = "soon"
    errors = [m for m in check_integrity_settings() if m.id == "tracking.E072"]
    assert errors and "TRACKING_CELERY_CONFIRM_AFTER" in errors[0].msg


def test_durable_handoff_needs_a_persistent_spool_dir(settings):
    """The default folder (temporary directory) survives a killed process, not a reboot: the
    machine-crash guarantee asks for a folder of the site's own."""
    from tracking.checks import check_recording

    settings.TRACKING_SPOOL_DIR = None
    settings.TRACKING_DURABLE_HANDOFF = True
    ids = [m.id for m in check_recording()]
    assert "tracking.E019" in ids and "tracking.W010" not in ids
    settings.TRACKING_DURABLE_HANDOFF = False
    ids = [m.id for m in check_recording()]
    assert "tracking.W010" in ids and "tracking.E019" not in ids


def test_every_check_of_the_package_carries_the_tracking_tag(settings):
    # `manage.py check --tag tracking` runs them alone: a missing key is among them.
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    settings.TRACKING_ENCRYPTION_KEYS = []
    with pytest.raises(SystemCheckError) as exc:
        call_command("check", "--tag", "tracking")
    assert "tracking.E001" in str(exc.value)
    ours = [
        c
        for c in checks.registry.registry.get_checks()
        if c.__module__.startswith(("tracking.", "detectors."))
    ]
    assert ours and all("tracking" in c.tags for c in ours)


def test_the_tracking_command_runs_the_package_checks_first(settings):
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    settings.TRACKING_ENCRYPTION_KEYS = []
    with pytest.raises(SystemCheckError) as exc:
        call_command("tracking", "keygen", skip_checks=False)
    assert "tracking.E001" in str(exc.value)


def test_the_tracking_command_leaves_the_url_checks_to_manage_py_check(settings):
    # They import every view of the project (~20 MiB per process of a parallel export) for
    # commands that serve none.
    import io

    from django.core.management import call_command

    settings.ROOT_URLCONF = "tests.no_such_urlconf"
    with pytest.raises(ModuleNotFoundError):
        call_command("check")
    out = io.StringIO()
    call_command("tracking", "keygen", skip_checks=False, stdout=out)
    assert out.getvalue().strip()
