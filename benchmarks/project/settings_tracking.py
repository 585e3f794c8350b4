"""django-activity-tracking installed: writing, enrichment, detection and sealing all run on
this machine (in-process writer thread for ``async_log=True``)."""

import os

from .settings_base import *  # noqa: F403
from .settings_base import BASE_DIR, INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tracking"]

# Fixed bench-only keys (never use these anywhere else).
TRACKING_ENCRYPTION_KEYS = ["YmVuY2gtZW5jcnlwdGlvbi1rZXktMDAwMDAwMDAwMDA="]
TRACKING_SEAL_KEYS = ["bench-seal-key-not-secret"]
TRACKING_ASYNC_HANDOFF = os.environ.get("BENCH_HANDOFF", "thread")
TRACKING_SPOOL_DIR = str(BASE_DIR / "var" / "bench" / "spool")
# The load generator sends X-Forwarded-For from a rotating set of world addresses, so
# enrichment and detection see realistic, varied traffic.
TRACKING_TRUSTED_PROXIES = ["127.0.0.1/32"]
GEOIP_PATH = str(BASE_DIR / "var" / "bench" / "geoip")
CELERY_BROKER_URL = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/14")
# The request benchmark's "track-celery" variant publishes to a queue of its own.
TRACKING_CELERY_QUEUE = os.environ.get("BENCH_CELERY_QUEUE", "tracking")
TRACKING_CELERY_APP = "benchmarks.project.celery.app"
