"""System checks for the app's settings: configuration errors are reported at start-up.

Each area registers its checks here with a stable id (tracking.E0xx errors, W0xx warnings);
most areas keep their messages next to their code, in their own ``checks.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

from django.apps import apps
from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext as _

from tracking.capture.checks import trusted_proxy_messages
from tracking.conf import CHECKS_TAG, conflicting_aliases, positive_int, tracking_settings
from tracking.dashboard.checks import dashboard_messages
from tracking.delivery import config as delivery_config
from tracking.detection.checks import detection_messages
from tracking.enrich.checks import enrichment_messages
from tracking.integrity import crypto
from tracking.integrity import macs as integrity
from tracking.pipeline.checks import recording_messages
from tracking.respond.checks import respond_messages


@checks.register(checks.Tags.security, CHECKS_TAG)
def check_keys(app_configs=None, **kwargs):
    errors = []
    keys = tracking_settings.ENCRYPTION_KEYS
    if not keys:
        errors.append(
            checks.Error(
                _("TRACKING_ENCRYPTION_KEYS is empty."),
                hint=_(
                    "Run `python manage.py tracking keygen` and set the printed key "
                    "(a list; the first key encrypts, all keys decrypt)."
                ),
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
                        _("TRACKING_ENCRYPTION_KEYS[%(i)s] is invalid: %(exc)s.")
                        % {"i": i, "exc": exc},
                        hint=_("Keys are urlsafe base64 of 32 random bytes (`tracking keygen`)."),
                        id="tracking.E002",
                    )
                )
    seal_keys = tracking_settings.SEAL_KEYS
    if not seal_keys:
        errors.append(
            checks.Error(
                _("TRACKING_SEAL_KEYS is empty."),
                hint=_(
                    "Set at least one key (`python manage.py tracking keygen`); it "
                    "authenticates rows and seals and must not be stored in the database."
                ),
                id="tracking.E003",
            )
        )
    for i, key in enumerate(seal_keys or []):
        problem = integrity.key_problem(key)
        if problem:
            errors.append(
                checks.Error(
                    _("TRACKING_SEAL_KEYS[%(index)d] %(problem)s.")
                    % {"index": i, "problem": problem},
                    hint=_(
                        "Seal keys authenticate rows, seals, tombstones and models: use 32 "
                        "random bytes, urlsafe base64 (`python manage.py tracking keygen`)."
                    ),
                    id="tracking.E004",
                )
            )
    hash_key = tracking_settings.HASH_KEY
    if hash_key:
        problem = integrity.key_problem(hash_key)
        if problem:
            errors.append(
                checks.Error(
                    _("TRACKING_HASH_KEY %(problem)s.") % {"problem": problem},
                    hint=_(
                        "It keys the hash of session ids: use 32 random bytes, urlsafe base64 "
                        "(`python manage.py tracking keygen`), or leave it unset (derived from the "
                        "first seal key)."
                    ),
                    id="tracking.E005",
                )
            )
    return errors


@checks.register(CHECKS_TAG)
def check_partitioning(app_configs=None, **kwargs):
    """Settings of PostgreSQL time partitioning (tracking.E120-E139)."""
    errors = []
    ahead = tracking_settings.PARTITION_MONTHS_AHEAD
    if isinstance(ahead, bool) or not isinstance(ahead, int) or not 0 <= ahead <= 120:
        errors.append(
            checks.Error(
                _(
                    "TRACKING_PARTITION_MONTHS_AHEAD must be an integer from 0 to 120, got %(ahead)r."
                )
                % {"ahead": ahead},
                hint=_(
                    "It is how many monthly partitions `tracking partitions ensure` keeps "
                    "created ahead of the current month (default 3)."
                ),
                id="tracking.E120",
            )
        )
    if not isinstance(tracking_settings.PARTITIONING, bool):
        errors.append(
            checks.Error(
                _("TRACKING_PARTITIONING must be True or False, got %(partitioning)r.")
                % {"partitioning": tracking_settings.PARTITIONING},
                hint=_(
                    "True partitions tracking_activity by month on PostgreSQL (migration 0002)."
                ),
                id="tracking.E121",
            )
        )
    return errors


@checks.register(CHECKS_TAG)
def check_dashboard(app_configs=None, **kwargs):
    """Settings of the security dashboard (tracking.E090-E099, W090-W099)."""

    return dashboard_messages()


@checks.register(checks.Tags.security, CHECKS_TAG)
def check_respond(app_configs=None, **kwargs):
    """Blocking: TRACKING_NEVER_BLOCK, the block cache, backend order (E130-E139, W130-W139)."""
    return respond_messages()


@checks.register(CHECKS_TAG)
def check_enrichment(app_configs=None, **kwargs):
    """Enrichment sources: the Tor exit list, breached passwords (E100-E119, W100-W119)."""
    return enrichment_messages()


@checks.register(CHECKS_TAG)
def check_integrity_settings(app_configs=None, **kwargs):
    """Sealing, retention, health and spool settings (tracking.E070-E089 / W070-W089)."""

    errors = []
    days = tracking_settings.RETENTION_DAYS
    if days is not None and not positive_int(days):
        errors.append(
            checks.Error(
                _(
                    "TRACKING_RETENTION_DAYS must be None or a whole number of days >= 1, got %(days)r."
                )
                % {"days": days},
                hint=_(
                    "It is the age after which `tracking purge` (without --days/--before) and "
                    "the periodic purge task delete activities; None keeps everything."
                ),
                id="tracking.E070",
            )
        )
    for name, eid in (("SEAL_BATCH_SIZE", "tracking.E071"),):
        value = getattr(tracking_settings, name)
        if not positive_int(value):
            errors.append(
                checks.Error(
                    _("TRACKING_%(name)s must be a whole number >= 1, got %(value)r.")
                    % {"name": name, "value": value},
                    hint=_("Rows per seal (and per sealing transaction); default 5000."),
                    id=eid,
                )
            )
    for name in (
        "CELERY_CONFIRM_AFTER",
        "HEALTH_MAX_UNSEALED_AGE",
        "HEALTH_MAX_UNSEALED_ROWS",
        "HEALTH_MAX_SPOOL_AGE",
        "SEAL_GEO_PENDING_GRACE",
        "SEAL_INTERVAL",
        "UNSEALED_BEHIND_HEAD_GRACE",
    ):
        value = getattr(tracking_settings, name)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | float) or value < 0
        ):
            errors.append(
                checks.Error(
                    _("TRACKING_%(name)s must be a non-negative number (or None), got %(value)r.")
                    % {"name": name, "value": value},
                    id="tracking.E072",
                )
            )
    token = tracking_settings.HEALTH_TOKEN
    if token and (not isinstance(token, str) or len(token) < 24):
        errors.append(
            checks.Warning(
                _("TRACKING_HEALTH_TOKEN is shorter than 24 characters."),
                hint=_("Use a long random value (e.g. `python manage.py tracking keygen`)."),
                id="tracking.W071",
            )
        )
    if not tracking_settings.SEAL_ON_WRITE:
        errors.append(
            checks.Warning(
                _(
                    "TRACKING_SEAL_ON_WRITE is off: activities stay unsealed (not tamper-evident) "
                    "until `tracking seal` or the periodic seal task runs."
                ),
                hint=_("Schedule `tracking.tasks_periodic.seal` or `manage.py tracking seal`."),
                id="tracking.W072",
            )
        )
    anchor_file = tracking_settings.ANCHOR_FILE
    if anchor_file is not None and not isinstance(anchor_file, str | os.PathLike):
        errors.append(
            checks.Error(
                _("TRACKING_ANCHOR_FILE must be a file path or None, got %(value)r.")
                % {"value": anchor_file},
                hint=_("`tracking doctor` keeps the chain head there, outside the database."),
                id="tracking.E073",
            )
        )
    folder = tracking_settings.SPOOL_DIR
    if folder:
        path = Path(folder)
        probe = path
        while not probe.exists() and probe.parent != probe:
            probe = probe.parent
        if not (probe.is_dir() and os.access(probe, os.W_OK | os.X_OK)):
            errors.append(
                checks.Warning(
                    _("TRACKING_SPOOL_DIR %(folder)r is not writable by this process.")
                    % {"folder": folder},
                    hint=_(
                        "Events that cannot be written to the database (database or broker "
                        "down) are kept there; without it they can only be counted as failed."
                    ),
                    id="tracking.W070",
                )
            )
    return errors


@checks.register(CHECKS_TAG)
def check_recording(app_configs=None, **kwargs):
    """Recording and hand-off settings (ids tracking.E010–E029 / W010–W029)."""

    return [*trusted_proxy_messages(), *recording_messages()]


@checks.register(CHECKS_TAG)
def check_detection(app_configs=None, **kwargs):
    """TRACKING_DETECTORS, rule folders and the detection numbers, named precisely."""

    return detection_messages()


# --- review API (tracking.E030-E049 / W030-W049) -----------------------------------------


@checks.register(CHECKS_TAG)
def check_api_settings(app_configs=None, **kwargs):
    errors = []
    rates = tracking_settings.THROTTLE_RATES
    project_rates = (getattr(settings, "REST_FRAMEWORK", None) or {}).get(
        "DEFAULT_THROTTLE_RATES"
    ) or {}
    if not isinstance(rates, dict):
        errors.append(
            checks.Error(
                _(
                    "TRACKING_THROTTLE_RATES must be a dict like "
                    "{'burst': '60/min', 'sustained': '1000/hour'}."
                ),
                id="tracking.E030",
            )
        )
        rates = {}
    for origin, mapping in (
        ("TRACKING_THROTTLE_RATES", rates),
        ("DEFAULT_THROTTLE_RATES", project_rates),
    ):
        for scope in ("burst", "sustained"):
            rate = mapping.get(scope) if isinstance(mapping, dict) else None
            if rate is None:
                continue
            if not _valid_rate(rate):
                errors.append(
                    checks.Error(
                        _("%(origin)s[%(scope)r] = %(rate)r is not a valid rate.")
                        % {"origin": origin, "scope": scope, "rate": rate},
                        hint=_("Use '<number>/<s|sec|min|hour|day>', e.g. '60/min'."),
                        id="tracking.E031",
                    )
                )
    for name in ("MAX_PAGE_SIZE", "COUNT_LIMIT"):
        value = getattr(tracking_settings, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            errors.append(
                checks.Error(
                    _("TRACKING_%(name)s must be a positive integer, got %(value)r.")
                    % {"name": name, "value": value},
                    id="tracking.E032",
                )
            )
    if not isinstance(tracking_settings.API_DOCS_STAFF_ONLY, bool):
        errors.append(
            checks.Error(
                _("TRACKING_API_DOCS_STAFF_ONLY must be True or False, got %(value)r.")
                % {"value": tracking_settings.API_DOCS_STAFF_ONLY},
                hint=_("True makes the OpenAPI schema and docs pages staff-only."),
                id="tracking.E033",
            )
        )
    count_limit = tracking_settings.COUNT_LIMIT
    page_size = tracking_settings.MAX_PAGE_SIZE
    if isinstance(count_limit, int) and isinstance(page_size, int) and 0 < count_limit < page_size:
        errors.append(
            checks.Warning(
                _(
                    "TRACKING_COUNT_LIMIT (%(count_limit)s) is below TRACKING_MAX_PAGE_SIZE (%(page_size)s): counts of a single page would already be estimates."
                )
                % {"count_limit": count_limit, "page_size": page_size},
                id="tracking.W030",
            )
        )

    if not apps.is_installed("rest_framework.authtoken"):
        errors.append(
            checks.Warning(
                _(
                    "rest_framework.authtoken is not in INSTALLED_APPS: the tracking API accepts "
                    "session authentication only."
                ),
                hint=_(
                    "Add 'rest_framework.authtoken' to INSTALLED_APPS (and migrate) to let "
                    "API clients use DRF tokens."
                ),
                id="tracking.W031",
            )
        )
    return errors


def _valid_rate(rate) -> bool:
    if not isinstance(rate, str) or "/" not in rate:
        return False
    num, period = rate.split("/", 1)
    return num.strip().isdigit() and period.strip()[:1] in ("s", "m", "h", "d")


@checks.register(CHECKS_TAG)
def check_setting_aliases(app_configs=None, **kwargs):
    """A setting and its seed alias both set, to different values (tracking.E016)."""
    return [
        checks.Error(
            _("%(name)s and its alias %(alias)s are both set, to different values.")
            % {"name": name, "alias": alias},
            hint=_("Keep only %(name)s (the alias %(alias)s is read only when %(name)s is unset).")
            % {"name": name, "alias": alias},
            id="tracking.E016",
        )
        for name, alias in conflicting_aliases()
    ]


_DELIVERY_CHECK_IDS = {
    "TRACKING_ALERTS": "tracking.E170",
    "TRACKING_FORWARDERS": "tracking.E171",
    "TRACKING_DELIVERY": "tracking.E172",
}


@checks.register(CHECKS_TAG)
def check_alerts_forwarding(app_configs=None, **kwargs):
    """TRACKING_ALERTS, TRACKING_FORWARDERS, TRACKING_DELIVERY (tracking.E170-E179)."""
    errors = [
        checks.Error(
            message,
            hint=_(
                "See docs/alerts-and-forwarding.md for every option of alert channels and "
                "forwarders. Invalid entries deliver nothing until fixed."
            ),
            id=_DELIVERY_CHECK_IDS[setting],
        )
        for setting, message in delivery_config.problems()
    ]
    url = tracking_settings.SITE_URL
    if tracking_settings.ALERTS and not (
        isinstance(url, str) and url.startswith(("http://", "https://"))
    ):
        errors.append(
            checks.Warning(
                _(
                    "TRACKING_SITE_URL is not set: alert messages link to the dashboard by path only."
                ),
                hint=_('Set it to the site\'s base URL, e.g. "https://example.com".'),
                id="tracking.W170",
            )
        )
    for i, entry in enumerate(tracking_settings.ALERTS or []):
        secret = entry.get("secret") if isinstance(entry, dict) else None
        if isinstance(secret, str) and 0 < len(secret) < 16:
            errors.append(
                checks.Warning(
                    _(
                        "TRACKING_ALERTS[%(index)d]: the webhook secret is shorter than 16 characters."
                    )
                    % {"index": i},
                    hint=_(
                        "Use a long random value, e.g. `python -c 'import secrets; "
                        "print(secrets.token_urlsafe(32))'`."
                    ),
                    id="tracking.W171",
                )
            )
    for name in ("DELIVERY_INTERVAL", "OUTBOX_GAP_GRACE"):
        value = getattr(tracking_settings, name)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            errors.append(
                checks.Error(
                    _("TRACKING_%(name)s must be a positive number of seconds, got %(value)r.")
                    % {"name": name, "value": value},
                    id="tracking.E173",
                )
            )
    return errors
