"""Celery hand-off: ``tracking.tasks.ingest_events`` stores a list of event dicts.

The task is ``acks_late`` with ``reject_on_worker_lost``: a worker killed mid-batch leaves the
message unacknowledged and the broker redelivers it — RabbitMQ as soon as the worker's
connection drops, Redis and SQS once ``broker_transport_options["visibility_timeout"]`` has
passed (one hour unless set: system check ``tracking.W014``); redelivery is harmless because
``ingest`` skips ids already stored. If the worker's database is unavailable the task retries
with backoff, and after ``MAX_RETRIES`` keeps the events in the worker's durable spool.

Publishing uses the JSON serializer and no publish retries: a broker that is down fails fast
and the caller (the writer thread) takes the local path instead.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from celery import current_app, shared_task
from django.utils.module_loading import import_string

from tracking.conf import tracking_settings
from tracking.events import Event
from tracking.pipeline import spool
from tracking.pipeline.ingest import ingest

logger = logging.getLogger("tracking.tasks")

MAX_RETRIES = 8
# Longest wait before a retry (seconds). A Redis/SQS visibility timeout shorter than this plus
# a batch's work redelivers a batch its worker still holds (system check tracking.W015).
MAX_COUNTDOWN = 60


class DatabaseUnavailable(Exception):
    """The worker's database could not take the batch (the task retries)."""


@shared_task(
    bind=True,
    name="tracking.tasks.ingest_events",
    acks_late=True,
    reject_on_worker_lost=True,
    serializer="json",
    ignore_result=True,
    max_retries=MAX_RETRIES,
)
def ingest_events(self, events: list[dict[str, Any]]) -> dict[str, int]:
    result = ingest(events, source="celery")
    spool.keep_dead_letters(result.dead_letters)
    if result.unwritten:
        if self.request.retries < MAX_RETRIES:
            exc = DatabaseUnavailable(result.unavailable)
            raise self.retry(exc=exc, countdown=min(2**self.request.retries, MAX_COUNTDOWN))
        logger.error(
            "database still unavailable: %d events spooled on the worker", len(result.unwritten)
        )
        spool.append(result.unwritten)
        return {"stored": result.stored, "spooled": len(result.unwritten)}
    return {"stored": result.stored, "duplicates": result.duplicates, "failed": result.failed}


def celery_app():
    """``TRACKING_CELERY_APP`` (dotted path to the project's Celery app) or Celery's default
    app. The writer publishes from its own thread, so a thread-local "current" app set in
    another thread is not seen there: name the app when a project has several."""
    configured = tracking_settings.CELERY_APP
    if configured:
        return import_string(configured) if isinstance(configured, str) else configured
    return current_app._get_current_object()


def publish(events: Iterable[Event]) -> None:
    """Send one batch to the broker; raises if the broker is unreachable."""
    payload = [e.to_dict() if isinstance(e, Event) else e for e in events]
    app = celery_app()
    with app.connection_for_write() as conn:
        # One attempt: kombu's default reconnect loop would stall the writer for seconds.
        conn.ensure_connection(max_retries=0)
        app.tasks[ingest_events.name].apply_async(
            args=[payload],
            queue=tracking_settings.CELERY_QUEUE or None,
            serializer="json",
            retry=False,
            connection=conn,
        )
