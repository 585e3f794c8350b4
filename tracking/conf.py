"""One accessor for every setting of the app, read lazily and reloaded on ``setting_changed``.

Modelled on ``rest_framework.settings``: nothing is read at import time or in a class body,
so ``override_settings`` in tests and late configuration both work.

Settings are top-level Django settings named ``TRACKING_<NAME>``; ``GEOIP_PATH`` is Django's own
name and has no prefix. The seed's unprefixed ``SENSITIVE_FIELDS`` and ``DISABLE_GEOLOCATION``
are accepted as aliases of ``TRACKING_SENSITIVE_FIELDS`` and ``TRACKING_DISABLE_GEOLOCATION``
(the prefixed name wins; setting both to different values is system check ``tracking.E016``).
Access them as ``tracking_settings.<NAME>`` (without the prefix).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

# Names read without the TRACKING_ prefix (Django's GeoIP2 setting).
UNPREFIXED = frozenset({"GEOIP_PATH"})

# Seed spellings still accepted, as aliases of TRACKING_<NAME>: {accessor name: alias setting}.
ALIASES: dict[str, str] = {
    "SENSITIVE_FIELDS": "SENSITIVE_FIELDS",
    "DISABLE_GEOLOCATION": "DISABLE_GEOLOCATION",
}

DEFAULTS: dict[str, Any] = {
    # --- recording -------------------------------------------------------------------
    # Extra activity types: {"CODE": "Human label"}; built-ins live in tracking.activity_types.
    "ACTIVITY_TYPES": {},
    # Keys redacted everywhere (query string, form/JSON bodies, headers), case-insensitive.
    "SENSITIVE_FIELDS": ["password", "token", "secret"],
    # CIDRs of reverse proxies whose forwarding headers are believed. Default: trust none.
    "TRUSTED_PROXIES": [],
    # Largest header value / params document kept, in characters; longer is cut with a marker.
    "MAX_HEADER_LENGTH": 4096,
    "MAX_PARAMS_LENGTH": 16384,
    "MAX_BODY_BYTES": 1_048_576,
    "MAX_JSON_DEPTH": 20,
    "MAX_USER_AGENT_LENGTH": 512,
    # --- enrichment ------------------------------------------------------------------
    "DISABLE_GEOLOCATION": False,
    # Folder with GeoLite2-City.mmdb and GeoLite2-ASN.mmdb (Django's GeoIP2 names).
    "GEOIP_PATH": None,
    # Optional HTTP provider: URL template with "{ip}"; empty disables it.
    "GEO_HTTP_URL": "",
    "GEO_HTTP_TIMEOUT": 0.5,
    "GEO_CACHE_SIZE": 65536,
    # Retry geolocation later for events recorded while the provider was down.
    "GEO_RETRY_LATER": True,
    "UA_CACHE_SIZE": 16384,
    # --- storage and keys ------------------------------------------------------------
    # Field-encryption keys, urlsafe base64 of 32 bytes; the first encrypts, all decrypt.
    "ENCRYPTION_KEYS": [],
    # Keys that authenticate row MACs and seals (HMAC-SHA256); the first signs, all verify.
    "SEAL_KEYS": [],
    # Key for the keyed hash of session ids; default: derived from the first seal key.
    "HASH_KEY": None,
    # --- hand-off --------------------------------------------------------------------
    # "thread" (in-process background writer), "celery", or "sync".
    "ASYNC_HANDOFF": "thread",
    "QUEUE_SIZE": 10000,
    "BATCH_SIZE": 500,
    "FLUSH_INTERVAL": 0.25,
    "CELERY_QUEUE": "tracking",
    # Dotted path to the project's Celery app (default: Celery's default app) (recording).
    "CELERY_APP": None,
    # Durable local spool for events that could not be written (database down, broker down).
    "SPOOL_DIR": None,
    # Seconds between the writer's attempts to replay the spool (recording, tracking.pipeline.writer).
    "SPOOL_REPLAY_INTERVAL": 5.0,
    # True: async_log events are appended+fsynced to the spool before the request goes on,
    # so a killed process loses nothing acknowledged (recording, tracking.pipeline.writer).
    "DURABLE_HANDOFF": False,
    # sys.setswitchinterval() for processes that start the writer thread (seconds; None leaves
    # Python's 5 ms): a request thread waiting for the GIL while the writer ingests a batch
    # gets it back within this time instead of up to 5 ms (recording, tracking.pipeline.writer).
    "WRITER_SWITCH_INTERVAL": 0.0005,
    # --- detection -------------------------------------------------------------------
    # [("dotted.path.Detector", {params}), ...]; None means the built-in set.
    "DETECTORS": None,
    "RULE_DIRS": [],
    "BUILTIN_RULES": True,
    "FLAG_THRESHOLD": 0.7,
    # How findings' scores combine into Activity.risk_score: "max" or "noisy_or" (1 - Π(1 - s)).
    "RISK_COMBINE": "max",
    # Extra hosting/VPN and mobile-carrier AS numbers for the ASN-change detector (added to its
    # own hosting_asns / mobile_asns parameters).
    "HOSTING_ASNS": [],
    "MOBILE_ASNS": [],
    # --- integrity and retention -----------------------------------------------------
    "SEAL_ON_WRITE": True,
    # With SEAL_ON_WRITE: seconds between seals. > 0: the writing process's background writer
    # thread seals at most this often (sooner once SEAL_BATCH_SIZE rows wait), never the
    # request; 0: seal right after every write's commit, in the writing thread.
    "SEAL_INTERVAL": 5.0,
    "SEAL_BATCH_SIZE": 5000,
    "RETENTION_DAYS": None,
    # Rows still waiting for geolocation are left unsealed this many seconds (enrichment may
    # still change them); after that they are sealed as they are.
    "SEAL_GEO_PENDING_GRACE": 600,
    # Health (`tracking doctor`, api/tracking/health/): a non-empty value lets monitoring
    # read the health endpoint with "Authorization: Bearer <token>" (staff sessions always can).
    "HEALTH_TOKEN": "",
    # Unhealthy when the oldest unsealed row is older than this (seconds) or more rows than
    # this are unsealed: the bounds of the unsealed window promised in SECURITY.md.
    "HEALTH_MAX_UNSEALED_AGE": 3600,
    "HEALTH_MAX_UNSEALED_ROWS": 50000,
    # Unhealthy when the spool holds events older than this (seconds): the database is down.
    "HEALTH_MAX_SPOOL_AGE": 300,
    # --- dashboard -------------------------------------------------------------------
    # Seconds between live-feed polls (the page promises new events within 2 s).
    "DASHBOARD_POLL_INTERVAL": 1.0,
    # Most activities one poll returns, and rows per page of the flagged queue.
    "DASHBOARD_FEED_SIZE": 50,
    "DASHBOARD_PAGE_SIZE": 50,
    # Seconds each live-feed poll looks back, for rows committed after newer ones were shown
    # (batched writers, Celery); a quiet poll still costs one indexed count.
    "DASHBOARD_FEED_LAG": 120.0,
    # Activities shown before and after the event on the detail page's timeline.
    "DASHBOARD_TIMELINE_SIZE": 10,
    # --- API -------------------------------------------------------------------------
    "THROTTLE_RATES": {"burst": "60/min", "sustained": "1000/hour"},
    "MAX_PAGE_SIZE": 500,
    "COUNT_LIMIT": 10000,
    # --- scale (PostgreSQL) ----------------------------------------------------------
    # Partition tracking_activity by month (migration 0002; PostgreSQL only, no-op elsewhere).
    "PARTITIONING": True,
    # Monthly partitions kept created ahead of now by `tracking partitions ensure`.
    "PARTITION_MONTHS_AHEAD": 3,
}

# Settings holding dotted paths that are imported on first access.
IMPORT_STRINGS: frozenset[str] = frozenset()


def setting_name(name: str) -> str:
    """The Django setting that backs the accessor attribute ``name``."""
    return name if name in UNPREFIXED else f"TRACKING_{name}"


def configured_value(name: str, default: Any) -> Any:
    """The value of setting ``name``: its Django setting, else its alias, else ``default``."""
    primary = setting_name(name)
    if hasattr(settings, primary):
        return getattr(settings, primary)
    alias = ALIASES.get(name)
    if alias is not None and hasattr(settings, alias):
        return getattr(settings, alias)
    return default


def conflicting_aliases() -> list[tuple[str, str]]:
    """``(setting, alias)`` pairs that are both set, to different values."""
    return [
        (setting_name(name), alias)
        for name, alias in ALIASES.items()
        if hasattr(settings, setting_name(name))
        and hasattr(settings, alias)
        and getattr(settings, setting_name(name)) != getattr(settings, alias)
    ]


class TrackingSettings:
    """Attribute access to settings with defaults, cached until a setting changes."""

    def __init__(self, defaults: dict[str, Any] | None = None) -> None:
        self.defaults = defaults if defaults is not None else DEFAULTS
        self._cached: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name not in self.defaults:
            raise AttributeError(f"Invalid tracking setting: {name!r}")
        value = configured_value(name, self.defaults[name])
        if name in IMPORT_STRINGS and isinstance(value, str):
            value = import_string(value)
        self._cached.add(name)
        setattr(self, name, value)
        return value

    def reload(self) -> None:
        for name in self._cached:
            delattr(self, name)
        self._cached.clear()


tracking_settings = TrackingSettings()

_listeners: list = []


def on_reload(callback) -> Any:
    """Register ``callback()`` to run whenever a tracking setting changes (clears caches)."""
    _listeners.append(callback)
    return callback


def _reload(*, setting: str, **kwargs: Any) -> None:
    names = {setting_name(n) for n in DEFAULTS} | set(ALIASES.values())
    if setting in names or setting == "REST_FRAMEWORK":
        tracking_settings.reload()
        for callback in list(_listeners):
            callback()


setting_changed.connect(_reload)
