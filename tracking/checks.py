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
