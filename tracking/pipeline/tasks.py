"""Celery hand-off: ``tracking.tasks.ingest_events`` stores a list of events.

The writer publishes each batch as one sealed item (``tracking.pipeline.wire``: compressed,
AES-GCM under ``TRACKING_ENCRYPTION_KEYS``); the task also takes single spool lines and event
dicts (messages of earlier versions, producers of their own). What fails authentication is
kept as a dead letter, never stored.

The task is ``acks_late`` with ``reject_on_worker_lost``: a worker killed mid-batch leaves the
message unacknowledged and the broker redelivers it — RabbitMQ as soon as the worker's
connection drops, Redis and SQS once ``broker_transport_options["visibility_timeout"]`` has
passed (one hour unless set: system check ``tracking.W014``); redelivery is harmless because
``ingest`` skips ids already stored. If the worker's database is unavailable the task retries
with backoff, and after ``MAX_RETRIES`` keeps the events in the worker's durable spool. A
message the broker loses outright (Redis: popped by a worker killed before it recorded the
message as unacknowledged) is published again by its publisher, which keeps it until the
database holds its events (``tracking.pipeline.confirm``).

Publishing uses the JSON serializer and no publish retries: a broker that is down fails fast
and the caller (the writer thread) takes the local path instead.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable
from typing import Any

from celery import current_app, shared_task
from django.utils.module_loading import import_string

from tracking.conf import tracking_settings
from tracking.events import Event
from tracking.pipeline import intake, spool, wire
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
def ingest_events(
    self, events: list[str | dict[str, Any]], intake_rows: bool = False
) -> dict[str, int]:
    """``intake_rows``: the events are synchronous requests' intake rows (published by the
    web process's ``Judging`` job); their rows are deleted once their batch step is over,
    as ``intake.judge`` does in the web process."""
    opened, forged = wire.unpack(events)
    result = ingest(opened, source="intake" if intake_rows else "celery")
    spool.keep_dead_letters([*forged, *result.dead_letters])
    if intake_rows:
        # Rows of events the database did not take stay for the recovery scan.
        intake.release(opened, result)
    if result.unwritten:
        if self.request.retries < MAX_RETRIES:
            exc = DatabaseUnavailable(result.unavailable)
            raise self.retry(exc=exc, countdown=min(2**self.request.retries, MAX_COUNTDOWN))
        logger.error(
            "database still unavailable: %d events spooled on the worker", len(result.unwritten)
        )
        spool.append(result.unwritten)
        return {"stored": result.stored, "spooled": len(result.unwritten)}
    return {
        "stored": result.stored,
        "duplicates": result.duplicates,
        "failed": result.failed,
        "rejected": result.rejected + len(forged),
    }


def celery_app():
    """``TRACKING_CELERY_APP`` (dotted path to the project's Celery app) or Celery's default
    app. The writer publishes from its own thread, so a thread-local "current" app set in
    another thread is not seen there: name the app when a project has several."""
    configured = tracking_settings.CELERY_APP
    if configured:
        return import_string(configured) if isinstance(configured, str) else configured
    return current_app._get_current_object()


def publish(events: Iterable[Event], *, intake_rows: bool = False) -> str:
    """Send one batch to the broker; returns the sealed message sent (``send`` sends it
    again); raises if the broker is unreachable. ``intake_rows``: see ``ingest_events``."""
    batch = list(events)
    message = wire.pack(batch)
    send(message, len(batch), intake_rows=intake_rows)
    return message


def send(message: str, count: int, *, intake_rows: bool = False) -> None:
    """Send a sealed batch of ``count`` events (``publish``); raises if the broker is
    unreachable."""
    payload = [message]
    app = celery_app()
    task = app.tasks[ingest_events.name]
    while True:
        conn, kept = _connection(app)
        try:
            _send(task, payload, conn, count, intake_rows)
            return
        except Exception:
            _forget(conn)
            if not kept:
                raise
            # A kept connection the broker dropped while it idled: once more on a new one
            # (forgotten, so the next _connection opens one).


def queued() -> int:
    """Messages waiting in the tracking queue (a Redis list that does not exist is empty);
    raises if the broker cannot say."""
    app = celery_app()
    name = tracking_settings.CELERY_QUEUE or app.conf.task_default_queue
    conn, _ = _connection(app)
    try:
        conn.ensure_connection(max_retries=0)
        queue = app.amqp.queues[name](conn.default_channel)
        try:
            return int(queue.queue_declare(passive=True).message_count)
        except conn.channel_errors:  # no such queue: nothing waits in it
            _forget(conn)  # AMQP closes the channel on NOT_FOUND
            return 0
    except Exception:
        _forget(conn)
        raise


def _send(task, payload: list, conn, count: int, intake_rows: bool) -> None:
    # One attempt: kombu's default reconnect loop would stall the writer for seconds.
    conn.ensure_connection(max_retries=0)
    task.apply_async(
        args=[payload],
        # Only when set: a worker of an earlier version takes the messages it always took.
        kwargs={"intake_rows": True} if intake_rows else None,
        queue=tracking_settings.CELERY_QUEUE or None,
        serializer="json",
        retry=False,
        connection=conn,
        # Celery's default is a repr of the arguments for its logs: no need, and its cost
        # was a tenth of publishing.
        argsrepr=f"[{count} sealed events]",
    )


# The broker connection each publishing thread keeps between batches: opening one per batch
# (connect, Redis's health-check PING, channel set-up, queue declaration) cost more of the
# writer thread's CPU than the rest of publishing. Per thread because kombu connections are
# not thread-safe; per process because a connection inherited across fork is the parent's.
_kept = threading.local()
# A connection idle longer than this is replaced before use: brokers drop idle clients that
# send no heartbeats (RabbitMQ), and a quiet site should not pay a failed publish for it.
KEEP_IDLE = 20.0


def _connection(app) -> tuple[Any, bool]:
    """(connection, whether it was kept from an earlier batch) for ``app``."""
    held = getattr(_kept, "held", None)
    now = time.monotonic()
    if held is not None:
        pid, held_app, conn, last = held
        if pid == os.getpid() and held_app is app and now - last < KEEP_IDLE:
            _kept.held = (pid, app, conn, now)
            return conn, True
        if pid == os.getpid():
            _close(conn)
    conn = app.connection_for_write()
    _kept.held = (os.getpid(), app, conn, now)
    return conn, False


def _forget(conn) -> None:
    held = getattr(_kept, "held", None)
    if held is not None and held[2] is conn:
        _kept.held = None
    _close(conn)


def _close(conn) -> None:
    try:
        conn.release()
    except Exception:  # already broken: nothing to release
        logger.debug("closing a broker connection failed", exc_info=True)
