"""System checks for recording and the hand-off (ids tracking.E011-E029, W010-W029)."""

from __future__ import annotations

import os

from django.core import checks
from django.utils.translation import gettext as _

from tracking.conf import positive_int, tracking_settings


def recording_messages() -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
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
        if not positive_int(value):
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
        if not positive_int(value):
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
    if cap is not None and not positive_int(cap):
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

    # Here, not at the top: tasks imports Celery, an optional dependency.
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
