"""System checks for the app's settings: configuration errors are reported at start-up.

Each area registers its checks here with a stable id (tracking.E0xx errors, W0xx warnings).
"""

from __future__ import annotations

from django.core import checks

from .conf import tracking_settings


@checks.register(checks.Tags.security)
def check_keys(app_configs=None, **kwargs):
    from django.core.exceptions import ImproperlyConfigured

    from . import crypto

    errors = []
    keys = tracking_settings.ENCRYPTION_KEYS
    if not keys:
        errors.append(
            checks.Error(
                "TRACKING_ENCRYPTION_KEYS is empty.",
                hint="Run `python manage.py tracking keygen` and set the printed key "
                "(a list; the first key encrypts, all keys decrypt).",
                id="tracking.E001",
            )
        )
    else:
        for i, key in enumerate(keys):
            try:
                crypto.decode_key(key)
            except ImproperlyConfigured as exc:
                errors.append(
                    checks.Error(
                        f"TRACKING_ENCRYPTION_KEYS[{i}] is invalid: {exc}.",
                        hint="Keys are urlsafe base64 of 32 random bytes (`tracking keygen`).",
                        id="tracking.E002",
                    )
                )
    seal_keys = tracking_settings.SEAL_KEYS
    if not seal_keys:
        errors.append(
            checks.Error(
                "TRACKING_SEAL_KEYS is empty.",
                hint="Set at least one key (`python manage.py tracking keygen`); it "
                "authenticates rows and seals and must not be stored in the database.",
                id="tracking.E003",
            )
        )
    return errors


@checks.register()
def check_partitioning(app_configs=None, **kwargs):
    """Settings of PostgreSQL time partitioning (tracking.E120-E139)."""
    errors = []
    ahead = tracking_settings.PARTITION_MONTHS_AHEAD
    if isinstance(ahead, bool) or not isinstance(ahead, int) or not 0 <= ahead <= 120:
        errors.append(
            checks.Error(
                f"TRACKING_PARTITION_MONTHS_AHEAD must be an integer from 0 to 120, got {ahead!r}.",
                hint="It is how many monthly partitions `tracking partitions ensure` keeps "
                "created ahead of the current month (default 3).",
                id="tracking.E120",
            )
        )
    if not isinstance(tracking_settings.PARTITIONING, bool):
        errors.append(
            checks.Error(
                f"TRACKING_PARTITIONING must be True or False, got "
                f"{tracking_settings.PARTITIONING!r}.",
                hint="True partitions tracking_activity by month on PostgreSQL (migration 0002).",
                id="tracking.E121",
            )
        )
    return errors


@checks.register()
def check_dashboard(app_configs=None, **kwargs):
    """Settings of the security dashboard (tracking.E090-E099, W090-W099)."""
    from .dashboard.checks import dashboard_messages

    return dashboard_messages()
