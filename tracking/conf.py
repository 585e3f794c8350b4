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

# The system-check tag of every check this package registers: `manage.py check --tag tracking`
# runs them alone, and so does `manage.py tracking` (it leaves the project's URL and admin
# checks, which import every view, to `manage.py check`).
CHECKS_TAG = "tracking"

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
    # Record Django's user_logged_in / user_login_failed / user_logged_out as AUTH activities
    # (tracking.capture.auth).
    "AUTH_SIGNALS": True,
    # Requests the TrackingMiddleware records (tracking.capture.paths), first match wins:
    # {"path": regex searched in path_info, "type": activity type, "methods": [...] (omitted:
    # all), "async": hand off to the background writer}. Default: login/logout/token POSTs
    # (Django's LoginView, the admin's, DRF's obtain_auth_token) and the admin's writes.
    "PATHS": [
        {
            "path": r"/(log-?in|log-?out|sign-?in|sign-?out|api-token-auth|token)/?$",
            "type": "AUTH",
            "methods": ["POST"],
        },
        {"path": r"^/admin/", "type": "ADMIN", "methods": ["POST", "PUT", "PATCH", "DELETE"]},
    ],
    # Record account changes as ACCOUNT activities (tracking.capture.changes).
    "ACCOUNT_CHANGES": True,
    # Fields of the user model whose changes are recorded as ACCOUNT activities (names
    # missing on a custom user model are skipped), besides group and permission membership.
    "ACCOUNT_FIELDS": ["email", "password", "is_active", "is_staff", "is_superuser"],
    # Other models whose changes are recorded as ACCOUNT activities: {"app_label.Model":
    # ["field", ...]} (tracking.capture.changes).
    "CHANGE_MODELS": {},
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
    # Local file of Tor exit addresses (the Tor Project's list, fetched by the operator).
    "TOR_EXIT_LIST": "",
    # Breached-password check at login (off by default): k-anonymity range API or local file.
    "BREACHED_PASSWORDS": False,
    "BREACHED_PASSWORDS_URL": "https://api.pwnedpasswords.com/range/{prefix}",
    "BREACHED_PASSWORDS_FILE": "",
    "BREACHED_PASSWORDS_TIMEOUT": 0.3,
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
    # Activity types a synchronous (@track without async_log) request stores with their
    # verdict before its response; the others are committed to the intake before it and
    # stored with their verdict by the writer within FLUSH_INTERVAL.
    "VERDICT_BEFORE_RESPONSE": ["AUTH"],
    "CELERY_QUEUE": "tracking",
    # Dotted path to the project's Celery app (default: Celery's default app) (recording).
    "CELERY_APP": None,
    # Seconds after which a published batch the database does not hold is published again
    # (tracking.pipeline.confirm); 0 or None: trust the broker once it took the message.
    "CELERY_CONFIRM_AFTER": 120,
    # Durable local spool for events that could not be written (database down, broker down).
    "SPOOL_DIR": None,
    # Most bytes the spool's segments may hold (None: no limit). Events beyond it are refused,
    # counted in SPOOL_DIR/full.count and make health unhealthy (recording, tracking.pipeline.spool).
    "SPOOL_MAX_BYTES": 1024 * 1024 * 1024,
    # Total characters and number of request headers recorded per event; the rest is left
    # out with a marker (recording, tracking.redaction.redact_headers).
    "MAX_HEADERS_TOTAL": 32768,
    "MAX_HEADER_COUNT": 64,
    # Seconds between the writer's attempts to replay the spool (recording, tracking.pipeline.writer).
    "SPOOL_REPLAY_INTERVAL": 5.0,
    # async_log events are always journaled (a plain write to SPOOL_DIR) before the request
    # goes on, which survives a killed process; True also fdatasyncs the journal, shared by
    # the requests of a process that arrive meanwhile, which survives a machine crash
    # (recording, tracking.pipeline.journal).
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
    # Organisation networks: {"name": ["198.51.100.0/24", "AS64700", ...]}.
    "TRUSTED_NETWORKS": {},
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
    # Unsealed rows recorded more than this many seconds before the newest seal was made are
    # an alarm (verify, health, the sealer's log): their seal may have been removed.
    "UNSEALED_BEHIND_HEAD_GRACE": 300,
    # File outside the database where `tracking doctor` keeps the chain head it last saw and
    # `tracking verify` compares with it (see tracking.integrity.anchor). None: not kept.
    "ANCHOR_FILE": None,
    # Health (`tracking doctor`, api/tracking/health/): a non-empty value lets monitoring
    # read the health endpoint with "Authorization: Bearer <token>" (staff sessions always can).
    "HEALTH_TOKEN": "",
    # Unhealthy when the oldest unsealed row is older than this (seconds) or more rows than
    # this are unsealed: the bounds of the unsealed window promised in SECURITY.md.
    "HEALTH_MAX_UNSEALED_AGE": 3600,
    "HEALTH_MAX_UNSEALED_ROWS": 50000,
    # Unhealthy when the spool holds events older than this (seconds): the database is down.
    "HEALTH_MAX_SPOOL_AGE": 300,
    # --- respond (tracking.respond) --------------------------------------------------
    # CIDRs never blocked and never causing a block (office NAT, monitoring, your proxies).
    "NEVER_BLOCK": [],
    # Seconds a process reuses its snapshot of active blocks; a block created or lifted in
    # another process is seen within this time (in the same process at once).
    "BLOCK_CACHE_SECONDS": 5.0,
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
    # --- alerts and forwarding (docs/alerts-and-forwarding.md) --------------------------
    # Alert channels: [{"backend": "webhook"|"slack"|"email"|"dotted.path", "name": ...,
    # "url": ..., "secret": ..., "min_severity": "medium", "types": [...], "tags": [...],
    # "group_seconds": 300, "rate_limit": "30/min", "max_attempts": 8}, ...]
    "ALERTS": [],
    # Forwarders: [{"backend": "syslog"|"http"|"logging", "format": "cef"|"ecs"|"json", ...}]
    "FORWARDERS": [],
    # The site's base URL ("https://example.com"): alert messages link to the dashboard there.
    "SITE_URL": "",
    # Who delivers alerts and forwards: "thread" (a background thread in every process that
    # writes), "celery" (the task tracking.tasks.deliver), or "manual" (`tracking forward`).
    "DELIVERY": "thread",
    # Seconds between delivery rounds (each commit also wakes the thread).
    "DELIVERY_INTERVAL": 5.0,
    # Seconds a gap in the outbox's ids is waited for (a transaction still committing) before
    # it is taken for a rolled-back one.
    "OUTBOX_GAP_GRACE": 60.0,
    # --- API -------------------------------------------------------------------------
    "THROTTLE_RATES": {"burst": "60/min", "sustained": "1000/hour"},
    # True: the OpenAPI schema and its docs pages (schema/, docs/, redoc/) are for active
    # staff only; False (default): public, like the source of an open-source API.
    "API_DOCS_STAFF_ONLY": False,
    "MAX_PAGE_SIZE": 500,
    "COUNT_LIMIT": 10000,
    # --- scale (PostgreSQL) ----------------------------------------------------------
    # Partition tracking_activity by month (migration 0002; PostgreSQL only, no-op elsewhere).
    "PARTITIONING": True,
    # Monthly partitions kept created ahead of now by `tracking partitions ensure`.
    "PARTITION_MONTHS_AHEAD": 3,
}

# What each setting does, in a sentence or two: docs/settings.md is generated from DEFAULTS and
# this mapping by `make settings-doc`, and tests/test_settings_doc.py fails when a setting has
# no description here or the page is stale. Markdown: `code` spans only.
DESCRIPTIONS: dict[str, str] = {
    "ACTIVITY_TYPES": 'Extra activity types, `{"CODE": "Human label"}`, added to the '
    "built-in ones (`tracking.activity_types.BUILTIN_TYPES`).",
    "SENSITIVE_FIELDS": "Keys whose values are replaced by `[REDACTED]` in query strings, "
    "form and JSON bodies and headers, matched case-insensitively inside longer keys; a "
    "built-in list (authorization, cookies, card data, ...) is always redacted as well. The "
    "seed name `SENSITIVE_FIELDS` is read as an alias when this one is not set.",
    "TRUSTED_PROXIES": "CIDRs of your reverse proxies: `X-Forwarded-For` / `X-Real-IP` are "
    "read only when the socket address is inside one of them. Default: trust no proxy.",
    "MAX_HEADER_LENGTH": "Longest header or string value kept, in characters; longer values "
    "are cut with a visible `…[truncated N chars]` marker.",
    "MAX_PARAMS_LENGTH": "Longest recorded `params` document (query and body), in characters.",
    "MAX_BODY_BYTES": "Largest request body parsed and recorded, in bytes; a larger body is "
    "recorded as a `[body not recorded: …]` marker.",
    "MAX_JSON_DEPTH": "Deepest JSON nesting recorded; deeper subtrees become "
    "`[max depth exceeded]`.",
    "MAX_USER_AGENT_LENGTH": "Longest User-Agent string stored, in characters.",
    "DISABLE_GEOLOCATION": "`True` turns every geolocation and ASN lookup off. The seed name "
    "`DISABLE_GEOLOCATION` is read as an alias when this one is not set.",
    "GEOIP_PATH": "Folder holding `GeoLite2-City.mmdb` and `GeoLite2-ASN.mmdb`; a missing "
    "file is warning `tracking.W012`. MaxMind's `GeoIP2-Anonymous-IP.mmdb` is read too when "
    "present (the activity's `network_kind`).",
    "GEO_HTTP_URL": "Optional HTTP geolocation provider asked for addresses the databases do "
    "not know: a URL template with `{ip}` answering JSON; empty disables it.",
    "GEO_HTTP_TIMEOUT": "Seconds one HTTP provider lookup may take in total (half to connect, "
    "half to answer); the provider sits behind a circuit breaker.",
    "GEO_CACHE_SIZE": "Addresses whose geolocation answers are cached per process.",
    "GEO_RETRY_LATER": "Store rows whose provider lookup failed with `geo_pending=True` and "
    "complete them later (`tracking flush`).",
    "UA_CACHE_SIZE": "User-Agent strings whose parsed device is cached per process.",
    "BREACHED_PASSWORDS": "`True` checks the password of every login attempt against a breach "
    "corpus where `authenticate()` runs (`tracking.backends.TrackingBackend`, or "
    "`tracking.enrich.breach.BreachedPasswordBackend`); a successful login with a breached "
    "password gets the `breached_password` finding. The password is never stored, logged or "
    "sent whole. Checked by `tracking.E101`/`W101`.",
    "BREACHED_PASSWORDS_URL": "Pwned-Passwords-style range API: `{prefix}` is replaced by the "
    "first five hex characters of the password's SHA-1 (k-anonymity); empty disables it.",
    "BREACHED_PASSWORDS_FILE": "Local file of SHA-1 hashes sorted by hash (`HASH:COUNT` lines, "
    "as Pwned Passwords distributes them, or bare hashes); used instead of the API when set.",
    "BREACHED_PASSWORDS_TIMEOUT": "Seconds one range request may take in total; past it the "
    "answer is unknown and the login goes on.",
    "TOR_EXIT_LIST": "Path of a local file of Tor exit addresses (the Tor Project's bulk exit "
    "list or `exit-addresses` format, fetched by the operator); its addresses get "
    '`network_kind = "tor"`. Re-read when the file changes; empty disables it. Checked by '
    "`tracking.E100`/`W100`.",
    "ENCRYPTION_KEYS": "AES-256-GCM keys (urlsafe base64 of 32 bytes, from `tracking keygen`) "
    "for recorded headers and params: the first encrypts, all decrypt (rotation). Required.",
    "SEAL_KEYS": "HMAC keys for row MACs, hash-chain seals, tombstones, checkpoints and stored "
    "models: the first signs, all verify. Required (system check error when empty).",
    "HASH_KEY": "Key for the keyed hash stored instead of session ids; `None` derives one "
    "from the first seal key.",
    "ASYNC_HANDOFF": 'Where `async_log=True` events go: `"thread"` (in-process background '
    'writer), `"celery"` (batches published to a Celery queue) or `"sync"` (written in '
    'the request). With `"celery"` the workers also run the batch step of synchronous '
    "requests' intake rows.",
    "QUEUE_SIZE": "Events the in-process writer's queue holds; when it is full the caller "
    "writes synchronously instead of dropping.",
    "BATCH_SIZE": "Events per batch written by the writer, a Celery task or `tracking import`.",
    "FLUSH_INTERVAL": "Seconds the writer waits before writing a batch that is not full.",
    "VERDICT_BEFORE_RESPONSE": "Activity types a synchronous request (`@track` without "
    "`async_log`) stores in full, verdict included, before its response returns (detection, "
    'findings, blocks, rollups, alerts); `["*"]`: every type. Other types are committed '
    "before the response to the intake (one encrypted row) and stored as activities with "
    "their verdict by the process's writer thread (with the Celery hand-off, by the workers) "
    "about `TRACKING_FLUSH_INTERVAL` later (the "
    "`Activity` row appears then). A request inside a transaction (`ATOMIC_REQUESTS`) and "
    '`TRACKING_ASYNC_HANDOFF = "sync"` always store before the response. Checked by '
    "`tracking.E028`.",
    "CELERY_QUEUE": "Celery queue the batches are published to (run a worker with `-Q tracking`).",
    "CELERY_APP": 'Dotted path to your Celery app (e.g. `"proj.celery.app"`), unless the '
    "project imports it at start-up; without an app with a broker, warning `tracking.W013`.",
    "CELERY_CONFIRM_AFTER": "Seconds after which a batch published to Celery whose events the "
    "database does not hold yet is published again, while the queue is empty (a broker can "
    "lose a message it took: Redis when a worker dies as it receives it); after three "
    "publications the publishing process stores it itself. Until the database holds them the "
    "events stay in the process's journal. `0` or `None`: trust the broker once it took the "
    "message. Checked by `tracking.E072`.",
    "SPOOL_DIR": "Local folder of append-only, fsynced NDJSON segments holding events that "
    "could not be written (database or broker down), replayed later, and of each process's "
    "journal of `async_log` events (replayed when the process died). Unset: a private folder "
    "per database in the system's temporary directory (survives a killed process, not a "
    "reboot; warning `tracking.W010`).",
    "SPOOL_REPLAY_INTERVAL": "Seconds between the writer thread's attempts to replay the spool.",
    "DURABLE_HANDOFF": "What an acknowledged event survives. Always a killed process: an "
    "`async_log` event is journaled in `SPOOL_DIR` (a plain write) and a synchronous "
    "request's intake row is committed before the request goes on; by default PostgreSQL "
    "flushes that commit to disk within 3 x `wal_writer_delay` (0.6 s by default) instead of "
    "making the request wait. `True` also survives a machine crash or power loss: the "
    "journal is fdatasynced (one sync per group of concurrent requests of a process) and the "
    "intake commit waits for PostgreSQL's flush; needs `SPOOL_DIR` (error `tracking.E019`). "
    "Types in `VERDICT_BEFORE_RESPONSE` (logins by default) are always stored with a "
    "flushed commit.",
    "WRITER_SWITCH_INTERVAL": "`sys.setswitchinterval()` in processes that start the writer "
    "thread, in seconds, so requests get the GIL back quickly while a batch is written; "
    "`None` leaves Python's 5 ms.",
    "DETECTORS": 'Detectors to run: a list of `("dotted.path.Class", {params})`, '
    '`"dotted.path.Class"` or `{"class": ..., "params": {...}}`; `None` is the '
    "built-in set.",
    "RULE_DIRS": "Extra folders of rule files (`*.yml` / `*.yaml`).",
    "BUILTIN_RULES": "Load the shipped rule pack (`detectors.rulepack`).",
    "FLAG_THRESHOLD": "Risk score (0–1) at or above which an activity is flagged.",
    "RISK_COMBINE": "How findings' scores combine into the activity's risk score: "
    '`"max"` or `"noisy_or"` (1 − Π(1 − s)).',
    "HOSTING_ASNS": "AS numbers added to the ASN-change detector's hosting/VPN list.",
    "MOBILE_ASNS": "AS numbers added to the ASN-change detector's mobile-carrier list.",
    "TRUSTED_NETWORKS": "Organisation networks (office, corporate VPN, security gateway) by "
    'name: `{"Head office": ["198.51.100.0/24", "AS64700"]}` (CIDRs, `AS` numbers or '
    "integers). Their addresses are never new, travelled-to or anonymous for anyone; checked "
    "by `tracking.E057`.",
    "SEAL_ON_WRITE": "Seal what this process wrote (see `SEAL_INTERVAL`); `False` leaves "
    "sealing to `tracking seal` or the periodic task (warning `tracking.W072`).",
    "SEAL_INTERVAL": "Seconds between seals by the writing process's writer thread (sooner "
    "once `SEAL_BATCH_SIZE` rows wait, and at exit); `0` seals right after every commit in "
    "the writing thread (slower requests). Batches of 50 rows or more written by a writer "
    "thread, a Celery worker or an import are sealed as they are inserted.",
    "SEAL_BATCH_SIZE": "Rows per seal and per sealing transaction.",
    "RETENTION_DAYS": "Age in days purged by `tracking purge` without arguments and by the "
    "periodic purge task; `None` keeps everything.",
    "SEAL_GEO_PENDING_GRACE": "Seconds a row waiting for geolocation stays unsealed (its "
    "enrichment may still change it); after that it is sealed as it is.",
    "HEALTH_TOKEN": "Bearer token that lets monitoring read `api/tracking/health/` "
    "(`Authorization: Bearer <token>`); empty: staff only.",
    "HEALTH_MAX_UNSEALED_AGE": "Seconds the oldest unsealed row may wait before health "
    "reports unhealthy (HTTP 503, `tracking doctor` exit 1).",
    "HEALTH_MAX_UNSEALED_ROWS": "Unsealed rows allowed before health reports unhealthy.",
    "HEALTH_MAX_SPOOL_AGE": "Seconds events may wait in the spool before health reports "
    "unhealthy (the database is down).",
    "DASHBOARD_POLL_INTERVAL": "Seconds between the dashboard's live-feed polls (0.25–2).",
    "DASHBOARD_FEED_SIZE": "Most activities one live-feed poll returns.",
    "DASHBOARD_PAGE_SIZE": "Rows per page of the dashboard's flagged queue.",
    "DASHBOARD_FEED_LAG": "Seconds each live-feed poll looks back for rows committed late "
    "(batched writers, Celery).",
    "DASHBOARD_TIMELINE_SIZE": "Activities shown before and after the event on the "
    "dashboard's detail page.",
    "THROTTLE_RATES": "API throttle rates for the scopes `burst` and `sustained` that "
    '`REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]` does not set.',
    "MAX_PAGE_SIZE": "Largest `?page_size=` the API accepts.",
    "COUNT_LIMIT": "Rows the API and the admin count at most: above it the API reports this "
    "number with `count_is_estimate`, the admin PostgreSQL's planner estimate.",
    "PARTITIONING": "Partition `tracking_activity` by month on PostgreSQL when migrating (set "
    "`False` before `migrate` to keep one plain table); no effect elsewhere.",
    "PARTITION_MONTHS_AHEAD": "Months after the current one that `tracking partitions "
    "ensure` creates.",
    "NEVER_BLOCK": "CIDRs never blocked and never causing a block (office NAT, monitoring, "
    "your own proxies), whatever a rule or detector asks.",
    "BLOCK_CACHE_SECONDS": "Seconds a process reuses its snapshot of active blocks (0-300); "
    "a block created or lifted in another process is seen within this time.",
    "SPOOL_MAX_BYTES": "Most bytes the spool's segments may hold (None: no limit); events "
    "beyond it are refused, counted in `SPOOL_DIR/full.count` and make health unhealthy.",
    "MAX_HEADERS_TOTAL": "Total characters of request headers recorded per event; the rest is "
    "left out with a `[headers omitted]` marker.",
    "MAX_HEADER_COUNT": "Most request headers recorded per event; the rest is counted under "
    "`[headers omitted]`.",
    "UNSEALED_BEHIND_HEAD_GRACE": "Unsealed rows recorded more than this many seconds before "
    "the newest seal are an alarm for verify, health and the sealer (their seal may have "
    "been removed).",
    "ANCHOR_FILE": "File outside the database where `tracking doctor` keeps the chain head it "
    "last saw and `tracking verify` compares with it (None: not kept).",
    "API_DOCS_STAFF_ONLY": "True: the OpenAPI schema and its docs pages are for active staff "
    "only; False: public.",
    "AUTH_SIGNALS": "Record Django's `user_logged_in`, `user_login_failed` and "
    "`user_logged_out` as AUTH activities with their outcome, wherever they come from "
    "(`LoginView`, the admin, DRF's token view, any `authenticate()`/`login()`/`logout()`).",
    "PATHS": "Requests `tracking.middleware.TrackingMiddleware` records without a decorator: "
    'a list of `{"path": regex, "type": activity type, "methods": [...], "async": bool}`. '
    "Default: login/logout/token requests and the admin's state-changing requests.",
    "ACCOUNT_CHANGES": "Record changes to users, groups and permissions as ACCOUNT activities "
    "naming the fields changed (never a secret's value), with the acting user and request.",
    "ACCOUNT_FIELDS": "Fields of the user model whose changes are recorded as ACCOUNT "
    "activities (besides group and permission membership).",
    "CHANGE_MODELS": "Other models whose changes are recorded as ACCOUNT activities: "
    '`{"app_label.Model": ["field", ...]}`.',
    "ALERTS": 'Alert channels: a list of `{"backend": "webhook" | "slack" | "email" | '
    '"dotted.path", "name", "url", "secret", "min_severity", "types", "tags", '
    '"group_seconds", "rate_limit", "max_attempts"}` (docs/alerts-and-forwarding.md).',
    "FORWARDERS": "Forwarders of every recorded activity, block and seal head: a list of "
    '`{"backend": "syslog" | "http" | "logging", "format": "cef" | "ecs" | "json", ...}`.',
    "SITE_URL": "The site's base URL (`https://example.com`): alert messages link to the "
    "dashboard's detail page there.",
    "DELIVERY": 'Who delivers alerts and forwards: "thread" (a background thread in every '
    'process that writes), "celery" (the task `tracking.tasks.deliver`) or "manual" '
    "(`tracking forward`).",
    "DELIVERY_INTERVAL": "Seconds between delivery rounds (each commit also wakes the thread).",
    "OUTBOX_GAP_GRACE": "Seconds a gap in the outbox's ids is waited for (a transaction still "
    "committing) before it is taken for a rolled-back one.",
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


def positive_int(value: Any) -> bool:
    """Whether a setting's value is a whole number >= 1 (``True`` is not one): what the
    system checks of the count, size and interval settings accept."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


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
