"""django-activity-tracking installed: writing, enrichment, detection and sealing all run on
this machine (in-process writer thread for ``async_log=True``)."""

import os

from .settings_base import *  # noqa: F403
from .settings_base import BASE_DIR, INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tracking"]

# Fixed bench-only keys (never use these anywhere else).
TRACKING_ENCRYPTION_KEYS = ["YmVuY2gtZW5jcnlwdGlvbi1rZXktMDAwMDAwMDAwMDA="]
# 32 bytes, urlsafe base64 (system check tracking.E004): b"bench-seal-key-not-secret-000000".
TRACKING_SEAL_KEYS = ["YmVuY2gtc2VhbC1rZXktbm90LXNlY3JldC0wMDAwMDA="]
TRACKING_ASYNC_HANDOFF = os.environ.get("BENCH_HANDOFF", "thread")
# benchmarks/kill.py gives each run a spool of its own, so no run replays another's events.
TRACKING_SPOOL_DIR = os.environ.get("BENCH_SPOOL_DIR") or str(BASE_DIR / "var" / "bench" / "spool")
# benchmarks/kill.py's "durable" variant: the machine-crash guarantee (fsync before the response).
TRACKING_DURABLE_HANDOFF = bool(os.environ.get("BENCH_DURABLE_HANDOFF"))
# The load generator sends X-Forwarded-For from a rotating set of world addresses, so
# enrichment and detection see realistic, varied traffic.
TRACKING_TRUSTED_PROXIES = ["127.0.0.1/32"]
GEOIP_PATH = str(BASE_DIR / "var" / "bench" / "geoip")
CELERY_BROKER_URL = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/14")
# The request benchmark's "track-celery" variant publishes to a queue of its own.
TRACKING_CELERY_QUEUE = os.environ.get("BENCH_CELERY_QUEUE", "tracking")
TRACKING_CELERY_APP = "benchmarks.project.celery.app"
# The publisher's confirmation (tracking.pipeline.confirm); BENCH_CONFIRM_AFTER=0 turns it off
# to show what the broker alone keeps (benchmarks/kill.py).
TRACKING_CELERY_CONFIRM_AFTER = float(os.environ.get("BENCH_CONFIRM_AFTER") or 120)
# Redis keeps a killed worker's unacknowledged batch until this many seconds have passed
# (kombu's default: one hour). Unset or "0", the broker's default applies.
if float(os.environ.get("BENCH_VISIBILITY_TIMEOUT") or 0):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": float(os.environ["BENCH_VISIBILITY_TIMEOUT"]),
        # kombu sweeps the unacknowledged set every interval x throttle seconds (100 s by
        # default): as docs/deployment.md recommends, every 5 s.
        "unacked_restore_interval": 5,
        "unacked_restore_throttle": 1,
    }
