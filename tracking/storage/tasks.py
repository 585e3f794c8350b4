"""Periodic Celery tasks for integrity and retention (schedule them with Celery beat).

    CELERY_BEAT_SCHEDULE = {
        "tracking-seal": {"task": "tracking.tasks_periodic.seal", "schedule": 60.0},
        "tracking-purge": {"task": "tracking.tasks_periodic.purge", "schedule": 86400.0},
    }

Without Celery they are plain functions (cron can run ``manage.py tracking seal`` / ``purge``).
"""

from __future__ import annotations

import logging
from typing import Any

from tracking.conf import tracking_settings
from tracking.integrity import sealing
from tracking.storage import partitioning, retention

try:
    from celery import shared_task
except ImportError:  # Celery is optional

    def shared_task(*args, **kwargs):
        def wrap(fn):
            return fn

        return wrap(args[0]) if args and callable(args[0]) else wrap


@shared_task(name="tracking.tasks_periodic.seal", ignore_result=True)
def seal() -> int:
    """Seal pending activities (bounds the unsealed window when seal-on-write is off) and,
    on PostgreSQL with partitioning, make sure the coming months' partitions exist (cached per
    process per month: one catalogue query a month unless a partition is missing)."""
    try:
        partitioning.ensure_partitions()
    except Exception:  # sealing matters more; rows go to the default partition
        logging.getLogger("tracking.partitioning").exception("ensuring partitions failed")
    return sealing.seal_pending(wait=True)


@shared_task(name="tracking.tasks_periodic.purge")
def purge() -> dict[str, Any] | None:
    """Purge activities older than ``TRACKING_RETENTION_DAYS`` (does nothing when unset)."""
    days = tracking_settings.RETENTION_DAYS
    if not days:
        return None
    report = retention.purge(
        retention.cutoff_for_days(int(days)), retention.DEFAULT_BATCH_SIZE, by="periodic task"
    )
    return report.to_dict()
