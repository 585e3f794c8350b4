"""Celery's ``autodiscover_tasks()`` imports ``<app>.tasks``: this registers every task of the
app. Task names are stable (``tracking.tasks.ingest_events``, ``tracking.tasks_periodic.seal``,
``tracking.tasks_periodic.purge``, ``tracking.tasks.deliver``) whatever module defines them."""

from tracking.delivery.tasks import deliver
from tracking.pipeline.tasks import ingest_events
from tracking.storage.tasks import purge, seal

__all__ = ["deliver", "ingest_events", "purge", "seal"]
