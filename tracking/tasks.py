"""Celery's ``autodiscover_tasks()`` imports ``<app>.tasks``: this registers every task of the
app. Task names are stable (``tracking.tasks.ingest_events``, ``tracking.tasks_periodic.seal``,
``tracking.tasks_periodic.purge``) whatever module defines them."""

from tracking.pipeline.tasks import ingest_events
from tracking.storage.tasks import purge, seal

__all__ = ["ingest_events", "purge", "seal"]
