"""System checks for the app's settings: configuration errors are reported at start-up.

Each area registers its checks here with a stable id (tracking.E0xx errors, W0xx warnings).
"""

from __future__ import annotations

import os
from pathlib import Path

from django.apps import apps
from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext as _

from detectors.orgnetworks import parse_trusted
from detectors.registry import ConfigError
from detectors.rules import RuleError, load_rules
from tracking.capture.clientip import parse_networks
from tracking.conf import CHECKS_TAG, conflicting_aliases, tracking_settings
from tracking.dashboard.checks import dashboard_messages
from tracking.delivery import config as delivery_config
from tracking.detection.config import configured_detectors, rule_dirs
from tracking.enrich.checks import enrichment_messages
from tracking.integrity import crypto
from tracking.integrity import macs as integrity
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


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


@checks.register(CHECKS_TAG)
def check_integrity_settings(app_configs=None, **kwargs):
    """Sealing, retention, health and spool settings (tracking.E070-E089 / W070-W089)."""

    errors = []
    days = tracking_settings.RETENTION_DAYS
    if days is not None and not _positive_int(days):
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
        if not _positive_int(value):
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

    errors = []
    _nets, bad = parse_networks(tracking_settings.TRUSTED_PROXIES)
    if bad:
        errors.append(
            checks.Error(
                _("TRACKING_TRUSTED_PROXIES has invalid entries: %(value)s.")
                % {"value": ", ".join(map(repr, bad))},
                hint=_("Use CIDRs such as '10.0.0.0/8' or single addresses such as '192.0.2.1'."),
                id="tracking.E010",
            )
        )
    mode = tracking_settings.ASYNC_HANDOFF
    if mode not in ("thread", "celery", "sync"):
        errors.append(
            checks.Error(
                _("TRACKING_ASYNC_HANDOFF is %(mode)r.") % {"mode": mode},
                hint=_('Use "thread" (default), "celery" or "sync".'),
                id="tracking.E011",
            )
        )
    elif mode == "celery":
        try:
            import celery  # noqa: F401
        except ImportError:
            errors.append(
                checks.Error(
                    _('TRACKING_ASYNC_HANDOFF is "celery" but Celery is not installed.'),
                    hint=_("pip install 'django-activity-tracking[celery]'."),
                    id="tracking.E012",
                )
            )
        else:
            errors.extend(_celery_broker_warnings())
            errors.extend(_celery_redelivery_warnings())
    for name in (
        "QUEUE_SIZE",
        "BATCH_SIZE",
        "MAX_BODY_BYTES",
        "MAX_JSON_DEPTH",
        "MAX_HEADER_LENGTH",
        "MAX_PARAMS_LENGTH",
    ):
        value = getattr(tracking_settings, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            errors.append(
                checks.Error(
                    _("TRACKING_%(name)s must be a positive integer (got %(value)r).")
                    % {"name": name, "value": value},
                    id="tracking.E013",
                )
            )
    if not tracking_settings.SPOOL_DIR and tracking_settings.DURABLE_HANDOFF:
        errors.append(
            checks.Error(
                _(
                    "TRACKING_DURABLE_HANDOFF needs TRACKING_SPOOL_DIR: the default folder is in "
                    "the temporary directory, which a reboot may empty."
                ),
                hint=_("Set TRACKING_SPOOL_DIR to a persistent local folder."),
                id="tracking.E019",
            )
        )
    elif not tracking_settings.SPOOL_DIR:
        errors.append(
            checks.Warning(
                _(
                    "TRACKING_SPOOL_DIR is not set: the journal and the spool use a private "
                    "folder in the temporary directory, which survives a killed process but "
                    "not a reboot."
                ),
                hint=_(
                    "Set it to a persistent local directory writable by every web and worker "
                    "process."
                ),
                id="tracking.W010",
            )
        )
    elif tracking_settings.DURABLE_HANDOFF and mode == "sync":
        errors.append(
            checks.Warning(
                _("TRACKING_DURABLE_HANDOFF has no effect with TRACKING_ASYNC_HANDOFF = 'sync'."),
                id="tracking.W011",
            )
        )
    if not isinstance(tracking_settings.SENSITIVE_FIELDS, list | tuple):
        errors.append(
            checks.Error(
                _(
                    "TRACKING_SENSITIVE_FIELDS (alias SENSITIVE_FIELDS) must be a list of key names."
                ),
                id="tracking.E014",
            )
        )
    url = tracking_settings.GEO_HTTP_URL
    if url and (
        not isinstance(url, str) or "{ip}" not in url or not url.startswith(("http://", "https://"))
    ):
        errors.append(
            checks.Error(
                _(
                    "TRACKING_GEO_HTTP_URL must be an http(s) URL template containing {ip} (got %(url)r)."
                )
                % {"url": url},
                id="tracking.E015",
            )
        )
    geo_path = tracking_settings.GEOIP_PATH
    if geo_path and not tracking_settings.DISABLE_GEOLOCATION:
        missing = [
            n
            for n in ("GeoLite2-City.mmdb", "GeoLite2-ASN.mmdb")
            if not os.path.exists(os.path.join(str(geo_path), n))
        ]
        if missing:
            errors.append(
                checks.Warning(
                    _("GEOIP_PATH (%(geo_path)s) lacks %(value)s: activities get no geo/ASN.")
                    % {"geo_path": geo_path, "value": ", ".join(missing)},
                    hint=_(
                        "Download the GeoLite2 databases, or set TRACKING_DISABLE_GEOLOCATION = True."
                    ),
                    id="tracking.W012",
                )
            )
    for name in ("MAX_HEADERS_TOTAL", "MAX_HEADER_COUNT"):
        value = getattr(tracking_settings, name)
        if not _positive_int(value):
            errors.append(
                checks.Error(
                    _("TRACKING_%(name)s must be a whole number >= 1, got %(value)r.")
                    % {"name": name, "value": value},
                    hint=_("Bounds of the request headers recorded per event."),
                    id="tracking.E018",
                )
            )
    errors.extend(_verdict_before_response_errors())
    cap = tracking_settings.SPOOL_MAX_BYTES
    if cap is not None and not _positive_int(cap):
        errors.append(
            checks.Error(
                _(
                    "TRACKING_SPOOL_MAX_BYTES must be None or a whole number of bytes >= 1, "
                    "got %(value)r."
                )
                % {"value": cap},
                hint=_("Events beyond it are refused and counted (a health alarm)."),
                id="tracking.E017",
            )
        )
    return errors


def _verdict_before_response_errors() -> list[checks.CheckMessage]:
    types = tracking_settings.VERDICT_BEFORE_RESPONSE
    if isinstance(types, list | tuple | set | frozenset) and all(
        isinstance(t, str) and t.strip() for t in types
    ):
        return []
    return [
        checks.Error(
            _("TRACKING_VERDICT_BEFORE_RESPONSE must be a list of activity types (got %(value)r).")
            % {"value": types},
            hint=_(
                'For example ["AUTH"] (the default: logins are judged before the response), '
                '["AUTH", "PAYMENT"], [] (none) or ["*"] (every type).'
            ),
            id="tracking.E028",
        )
    ]


def _celery_broker_warnings() -> list[checks.CheckMessage]:
    """Without a named or configured Celery app, batches would go to Celery's built-in
    default broker (amqp://guest@localhost//): silently to a queue nobody reads when some
    RabbitMQ answers there, to the local fallback when none does."""

    if tracking_settings.CELERY_APP or os.environ.get("CELERY_BROKER_URL"):
        return []
    from celery import current_app

    if current_app._get_current_object().conf.broker_url:
        return []
    return [
        checks.Warning(
            _(
                'TRACKING_ASYNC_HANDOFF is "celery" but no Celery app with a broker is configured '
                "in this process: batches would be published to Celery's default broker "
                "(amqp://guest@localhost//), where your workers may not be listening."
            ),
            hint=_(
                "Set TRACKING_CELERY_APP to your app's dotted path (e.g. 'proj.celery.app'), "
                "or import your Celery app in your project's __init__.py."
            ),
            id="tracking.W013",
        )
    ]


# Brokers that hold an unacknowledged message until a visibility timeout, not until the
# consumer's connection drops (kombu's Redis and SQS transports).
_TIMEOUT_BROKERS = ("redis", "rediss", "redis+socket", "sentinel", "sqs")
REDELIVERY_TARGET = 120  # seconds: the visibility timeout W014/W015 recommend
REDELIVERY_MAX = 600  # above this, a dead worker's batch is not "promptly" redelivered


def _celery_redelivery_warnings() -> list[checks.CheckMessage]:
    """A batch whose Celery worker died comes back when the broker redelivers it: RabbitMQ
    when the connection drops, Redis/SQS after the visibility timeout (kombu's default:
    one hour, during which the acknowledged events are nowhere in the database)."""

    from tracking.pipeline.tasks import MAX_COUNTDOWN, celery_app

    try:
        app = celery_app()
        url = str(app.conf.broker_url or os.environ.get("CELERY_BROKER_URL") or "")
        options = dict(getattr(app.conf, "broker_transport_options", None) or {})
    except Exception:  # an app that cannot be loaded here: W013 and Celery itself say so
        return []
    scheme = url.split(";", 1)[0].split("://", 1)[0].strip().lower()
    if scheme not in _TIMEOUT_BROKERS:
        return []  # amqp:// redelivers on connection loss; other transports: not judged
    try:
        timeout = float(options["visibility_timeout"])
    except (KeyError, TypeError, ValueError):
        timeout = None  # kombu then uses its default, one hour
    # kombu sweeps the unacknowledged set every unacked_restore_interval seconds, scanning on
    # every unacked_restore_throttle-th sweep only (defaults 10 and 10: every 100 s), so a
    # dead worker's batch comes back up to timeout + sweep after its delivery.
    try:
        sweep = float(options.get("unacked_restore_interval", 10)) * float(
            options.get("unacked_restore_throttle", 10)
        )
    except (TypeError, ValueError):
        sweep = 100.0
    hint = _(
        "Set broker_transport_options = {'visibility_timeout': %(target)d, "
        "'unacked_restore_interval': 5, 'unacked_restore_throttle': 1} on the Celery app "
        "(CELERY_BROKER_TRANSPORT_OPTIONS with config_from_object(..., namespace='CELERY')): "
        "longer than a batch plus the task's %(countdown)d s retry backoff, short enough that "
        "a dead worker's batch is stored again within minutes. Or use RabbitMQ (amqp://), "
        "which redelivers as soon as the worker's connection drops."
    ) % {"target": REDELIVERY_TARGET, "countdown": MAX_COUNTDOWN}
    # The publisher publishes a batch again that is not stored CELERY_CONFIRM_AFTER seconds
    # after publishing (tracking.pipeline.confirm): a dead worker's batch comes back that soon
    # whatever the visibility timeout, which then only decides when kombu sends it again.
    confirm_after = tracking_settings.CELERY_CONFIRM_AFTER or 0
    confirmed = isinstance(confirm_after, int | float) and 0 < confirm_after <= REDELIVERY_MAX
    if (timeout is None or timeout + sweep > REDELIVERY_MAX) and not confirmed:
        shown = "unset: 3600 s" if timeout is None else f"{timeout:g} s"
        shown += _(", then up to %(sweep)g s until kombu's next sweep") % {"sweep": sweep}
        return [
            checks.Warning(
                _(
                    "The Celery broker (%(scheme)s) redelivers the batch of a worker that died "
                    "only after its visibility timeout (%(shown)s): until then those "
                    "acknowledged events are not stored."
                )
                % {"scheme": scheme, "shown": shown},
                hint=hint,
                id="tracking.W014",
            )
        ]
    if timeout is not None and timeout < MAX_COUNTDOWN + 5:
        return [
            checks.Warning(
                _(
                    "The Celery broker's visibility timeout (%(timeout)s s) is shorter than the "
                    "tracking task's retry backoff (up to %(countdown)d s): a batch its worker "
                    "still holds is delivered again to another one (stored once, worked twice)."
                )
                % {"timeout": f"{timeout:g}", "countdown": MAX_COUNTDOWN},
                hint=hint,
                id="tracking.W015",
            )
        ]
    return []


# --- detection (tracking.E050-E069 / W050-W069) -----------------------------------------
@checks.register(CHECKS_TAG)
def check_detection(app_configs=None, **kwargs):
    """TRACKING_DETECTORS, rule folders and the detection numbers, named precisely."""

    errors = []
    detectors = []
    try:
        detectors = configured_detectors()
    except ConfigError as exc:
        errors.append(
            checks.Error(
                _("TRACKING_DETECTORS %(exc)s") % {"exc": exc},
                hint=_(
                    'Entries are ("dotted.path.DetectorClass", {params}) with the class\'s own '
                    "parameter names; None means the built-in set."
                ),
                id="tracking.E050",
            )
        )
    except (TypeError, ValueError) as exc:
        errors.append(
            checks.Error(
                _("TRACKING_DETECTORS is invalid: %(exc)s") % {"exc": exc}, id="tracking.E050"
            )
        )
    rule_dir_setting = tracking_settings.RULE_DIRS
    rules = []
    if not isinstance(rule_dir_setting, list | tuple):
        errors.append(
            checks.Error(_("TRACKING_RULE_DIRS must be a list of folders."), id="tracking.E052")
        )
    else:
        try:
            rules = load_rules(rule_dirs())
        except RuleError as exc:
            errors.append(
                checks.Error(
                    _("Invalid detection rule: %(exc)s") % {"exc": exc},
                    hint=_("Fix or remove the rule file; docs/rules.md describes the format."),
                    id="tracking.E051",
                )
            )
    threshold = tracking_settings.FLAG_THRESHOLD
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, int | float)
        or not 0 <= threshold <= 1
    ):
        errors.append(
            checks.Error(
                _("TRACKING_FLAG_THRESHOLD must be a number in [0, 1], got %(threshold)r.")
                % {"threshold": threshold},
                id="tracking.E053",
            )
        )
    if tracking_settings.RISK_COMBINE not in ("max", "noisy_or"):
        errors.append(
            checks.Error(
                _("TRACKING_RISK_COMBINE must be 'max' or 'noisy_or', got %(risk_combine)r.")
                % {"risk_combine": tracking_settings.RISK_COMBINE},
                id="tracking.E054",
            )
        )
    for name in ("HOSTING_ASNS", "MOBILE_ASNS"):
        value = getattr(tracking_settings, name)
        if not isinstance(value, list | tuple) or not all(
            isinstance(a, int) and not isinstance(a, bool) for a in value
        ):
            errors.append(
                checks.Error(
                    _("TRACKING_%(name)s must be a list of AS numbers (integers).")
                    % {"name": name},
                    id="tracking.E055",
                )
            )
    if not isinstance(tracking_settings.BUILTIN_RULES, bool):
        errors.append(
            checks.Error(_("TRACKING_BUILTIN_RULES must be True or False."), id="tracking.E056")
        )
    try:
        parse_trusted(tracking_settings.TRUSTED_NETWORKS)
    except ValueError as exc:
        errors.append(
            checks.Error(
                _("TRACKING_TRUSTED_NETWORKS: %(error)s.") % {"error": exc},
                hint=_('Example: {"Head office": ["198.51.100.0/24", "AS64700"]}.'),
                id="tracking.E057",
            )
        )
    if detectors and rules:
        # A rule may silence a detector or another rule ("rule:<id>").
        names = {d.name for d in detectors} | {r.detector for r in rules}
        for rule in rules:
            unknown = [s for s in rule.action.suppress if s not in names]
            if unknown:
                errors.append(
                    checks.Warning(
                        _("Rule %(id)s (%(path)s) suppresses unconfigured detector(s): %(value)s.")
                        % {"id": rule.id, "path": rule.path, "value": ", ".join(unknown)},
                        id="tracking.W050",
                    )
                )
    return errors


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
