"""Where an event goes after ``ActivityTracker.record`` (see ``tracking.pipeline.writer`` for the modes).

- ``write_now(events)``: ingest in the caller; if even that fails unexpectedly the events go to
  the spool, and if the spool fails to the writer's queue. The caller never sees an error.
- ``submit(event)``: the ``async_log=True`` path, chosen by ``TRACKING_ASYNC_HANDOFF`` and
  ``TRACKING_DURABLE_HANDOFF``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from tracking.conf import tracking_settings
from tracking.events import Event

logger = logging.getLogger("tracking.recording")

# Failures outside the writer: building an event (record_errors) and synchronous writes that
# had to fall back to the spool (sync_errors). Reported by ``tracking.pipeline.writer.stats()``.
_counters = {"sync_errors": 0, "record_errors": 0}


def count(name: str, n: int = 1) -> None:
    _counters[name] = _counters.get(name, 0) + n


def write_now(events: Sequence[Event], *, assume_new: bool = False) -> None:
    """``assume_new``: the events were just built (fresh ids), see ``ingest``."""
    from tracking.pipeline.ingest import ingest

    try:
        ingest(events, source="sync", spool_failures=True, assume_new=assume_new)
    except Exception:  # noqa: BLE001 - the user's request must succeed
        _counters["sync_errors"] += len(events)
        logger.exception("tracking: synchronous write failed; keeping %d events", len(events))
        _keep(events)


def _keep(events: Sequence[Event]) -> None:
    from tracking.pipeline import spool, writer

    try:
        spool.append(events)
    except Exception:  # noqa: BLE001
        logger.exception("tracking: spool unavailable; events handed to the writer")
        w = writer.get_writer()
        w.retry.extend(events)
        w.wake()


def submit(event: Event) -> None:
    from tracking.pipeline import spool, writer

    mode = tracking_settings.ASYNC_HANDOFF
    if mode == "sync":
        write_now([event], assume_new=True)
        return
    if tracking_settings.DURABLE_HANDOFF:
        # Acknowledged = on disk: appended and fsynced before the request goes on.
        try:
            spool.append([event])
        except Exception:  # noqa: BLE001
            logger.exception("tracking: durable spool unavailable; using the in-memory queue")
            writer.submit(event)
            return
        writer.get_writer().wake()
        return
    writer.submit(event)


def stats() -> dict:
    return dict(_counters)
