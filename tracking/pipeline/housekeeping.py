"""Housekeeping the writer thread runs after each round (``tracking.pipeline.writer.Job``).

Registered with the writer by ``tracking.pipeline.handoff``; the writer imports none of this.

- ``SpoolReplay``: replays the durable spool every ``TRACKING_SPOOL_REPLAY_INTERVAL`` seconds
  (and in the writer's first round), or as soon as the writer is woken (``tracking flush``),
  after adopting the journals of processes that died (``tracking.pipeline.journal.adopt``);
- ``GeoRetry``: completes rows stored without geolocation once the provider answers again;
- ``Sealing``: seals what this process committed, at most every ``TRACKING_SEAL_INTERVAL``
  seconds (``rows_committed``, the after-commit hook of ``ingest``, decides);
- ``Partitions``: keeps next months' partitions in place (PostgreSQL, partitioned table);
- ``Judging``: the judge stage of synchronous requests (``judge_soon``) and the recovery of
  rows left pending by a process that died (``judge_unjudged``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from datetime import timedelta

from django.utils import timezone

from tracking.conf import tracking_settings
from tracking.enrich import geo
from tracking.integrity import sealing
from tracking.models import Activity
from tracking.pipeline import journal, spool
from tracking.pipeline.ingest import ingest, judge
from tracking.pipeline.writer import Writer, get_writer
from tracking.storage import partitioning

logger = logging.getLogger("tracking.writer")

GEO_RETRY_INTERVAL = 60.0  # seconds between attempts to complete rows stored without geo
# Seconds between checks that next months' partitions exist (PostgreSQL, partitioned table):
# one catalogue query per hour per process, DDL only when a month is missing.
PARTITION_CHECK_INTERVAL = 3600.0
# A synchronous request's row is judged by its process's writer within about a second. One
# pending for longer than this was left by a process that died between commit and verdict
# (or its writer is far behind): the recovery scan judges it. Rows being judged elsewhere
# are skipped (``ingest.judge`` claims with SKIP LOCKED), so the grace only avoids work.
UNJUDGED_GRACE = 10.0
UNJUDGED_SCAN_INTERVAL = 30.0  # seconds between recovery scans of a writer (and at start)
JUDGE_BATCH = 500  # rows per judge transaction


def replay_spool(limit: int | None = None, batch_size: int | None = None) -> spool.ReplayResult:
    """Replay the spool through ``ingest`` (the writer's job and ``tracking flush``), with the
    journals of dead processes adopted into it first."""
    journal.adopt()
    return spool.replay(_ingest_spooled, limit=limit, batch_size=batch_size)


def _ingest_spooled(events: list[dict]):
    return ingest(events, source="spool")


class SpoolReplay:
    def __init__(self) -> None:
        self.last = 0.0

    def run(self, writer: Writer, *, stopping: bool) -> None:
        now = time.monotonic()
        interval = float(tracking_settings.SPOOL_REPLAY_INTERVAL)
        if not writer.wakeup.is_set() and now - self.last < interval:
            return
        writer.wakeup.clear()
        self.last = now
        try:
            # A dead process's journal becomes a segment here (no database work when none).
            if journal.adopt() or spool.pending():
                res = replay_spool()
                writer.count("replayed", res.stored)
        except Exception:  # the next round tries again
            logger.exception("spool replay failed")

    def pending(self) -> bool:
        return bool(tracking_settings.DURABLE_HANDOFF) and spool.pending()


class GeoRetry:
    """Complete rows stored without geo once the provider answers again (only when this
    process stored such rows, so idle processes never scan for them)."""

    def __init__(self) -> None:
        self.last = 0.0

    def run(self, writer: Writer, *, stopping: bool) -> None:
        now = time.monotonic()
        if not geo.owed() or now - self.last < GEO_RETRY_INTERVAL:
            return
        self.last = now
        try:
            geo.retry_pending_geo()
        except Exception:
            logger.exception("retrying owed geolocation failed")

    def pending(self) -> bool:
        return False


class Sealing:
    """Seal what this process committed when the interval has passed (or many rows wait,
    or the writer stops). Waits for the chain lock: nothing queues behind this thread."""

    def __init__(self) -> None:
        # Rows committed since the last seal (TRACKING_SEAL_INTERVAL > 0).
        self.rows = 0
        self.wanted = False
        self.last: float | None = None

    def soon(self, writer: Writer, rows: int) -> None:
        """Rows were committed: seal them within ``TRACKING_SEAL_INTERVAL`` seconds (sooner
        once ``TRACKING_SEAL_BATCH_SIZE`` rows wait)."""
        with writer.lock:
            self.rows += rows
            self.wanted = True
        writer.ensure_started()

    def run(self, writer: Writer, *, stopping: bool) -> None:
        now = time.monotonic()
        interval = float(tracking_settings.SEAL_INTERVAL or 0)
        limit = max(1, int(tracking_settings.SEAL_BATCH_SIZE or 5000))
        with writer.lock:
            if not self.wanted:
                return
            due = stopping or self.last is None or self.rows >= limit or now - self.last >= interval
            if not due:
                return
            self.wanted = False
            self.rows = 0
        self.last = now
        try:
            sealed = sealing.seal_pending(wait=True)
        except Exception:  # counted and retried after the interval
            logger.exception("sealing committed activities failed; retrying later")
            with writer.lock:
                writer.counters["seal_failures"] += 1
                self.wanted = True
            return
        writer.count("sealed", sealed)

    def pending(self) -> bool:
        return False


class Partitions:
    """Keep next months' partitions in place (PostgreSQL with partitioning installed; a
    no-op elsewhere): at start, then at most once per ``PARTITION_CHECK_INTERVAL``."""

    def __init__(self) -> None:
        self.last: float | None = None

    def run(self, writer: Writer, *, stopping: bool) -> None:
        now = time.monotonic()
        if self.last is not None and now - self.last < PARTITION_CHECK_INTERVAL:
            return
        self.last = now
        try:
            created = partitioning.ensure_partitions(refresh=True)
        except Exception:  # rows land in the default partition meanwhile
            logger.exception("ensuring monthly partitions failed; retrying in an hour")
            writer.count("partition_failures")
            return
        if created:
            logger.info("created partitions %s", ", ".join(created))

    def pending(self) -> bool:
        return False


class Judging:
    """Judge the rows synchronous requests stored pending (``judge_soon``), in one batch per
    writer round (a round ends at most ``TRACKING_FLUSH_INTERVAL`` seconds after the rows were
    handed over); when the writer starts and every ``UNJUDGED_SCAN_INTERVAL`` seconds, also
    the rows a dead process left pending (``judge_unjudged``)."""

    def __init__(self) -> None:
        self.rows: list[Activity] = []
        self.lock = threading.Lock()
        self.scanned: float | None = None
        self.judging = 0  # rows taken and not yet committed (``pending``: flush waits)

    def add(self, writer: Writer, rows: Sequence[Activity]) -> None:
        with self.lock:
            self.rows.extend(rows)
            # Bounded like the queue; rows let go stay pending in the table for the scan.
            excess = len(self.rows) - writer.queue.maxsize
            if excess > 0:
                del self.rows[:excess]
        writer.ensure_started()

    def run(self, writer: Writer, *, stopping: bool) -> None:
        with self.lock:
            rows, self.rows = self.rows, []
            self.judging = len(rows)
        try:
            for i in range(0, len(rows), JUDGE_BATCH):
                batch = rows[i : i + JUDGE_BATCH]
                try:
                    writer.count("judged", judge(batch))
                except Exception:  # the rows stay pending in the table: the scan judges them
                    logger.exception("judging %d activities failed", len(batch))
                    writer.count("judge_failures")
        finally:
            self.judging = 0
        now = time.monotonic()
        if self.scanned is not None and now - self.scanned < UNJUDGED_SCAN_INTERVAL:
            return
        self.scanned = now
        try:
            writer.count("recovered", judge_unjudged())
        except Exception:
            logger.exception("judging activities left pending failed; retrying later")
            writer.count("judge_failures")

    def pending(self) -> bool:
        return bool(self.rows) or self.judging > 0


def judge_soon(rows: Sequence[Activity]) -> None:
    """Have this process's writer judge ``rows`` (stored pending by ``ingest(judge=False)``)."""
    if not rows:
        return
    writer = get_writer()
    job = writer.job(Judging)
    if job is None:  # a writer configured without it: the caller's thread judges
        judge(rows)
        return
    job.add(writer, rows)


def unjudged(*, older_than: float | None = UNJUDGED_GRACE, limit: int = JUDGE_BATCH):
    """Rows pending for more than ``older_than`` seconds, oldest first."""
    qs = Activity.objects.filter(judged=False)
    if older_than:
        qs = qs.filter(timestamp__lt=timezone.now() - timedelta(seconds=older_than))
    return qs.order_by("timestamp", "id")[:limit]


def judge_unjudged(*, older_than: float | None = UNJUDGED_GRACE) -> int:
    """Judge the rows left pending (see ``UNJUDGED_GRACE``); returns how many this call
    judged. Stops when a batch judges nothing (the rest is held by another judge)."""
    total = 0
    while True:
        rows = list(unjudged(older_than=older_than))
        if not rows:
            return total
        done = judge(rows)
        total += done
        if not done or len(rows) < JUDGE_BATCH:
            return total


JOBS = (SpoolReplay, GeoRetry, Sealing, Partitions, Judging)


def rows_committed(rows: int) -> None:
    """``ingest``'s after-commit hook: seal what was written (``TRACKING_SEAL_ON_WRITE``).

    With ``TRACKING_SEAL_INTERVAL > 0`` the process's writer thread seals at most every
    interval (SECURITY.md, "the unsealed window"): sealing re-reads and re-hashes the new rows
    and takes the chain lock, too costly per request. With 0 the committing thread seals now.
    """
    if not tracking_settings.SEAL_ON_WRITE:
        return
    if float(tracking_settings.SEAL_INTERVAL or 0) > 0:
        writer = get_writer()
        job = writer.job(Sealing)
        if job is not None:
            job.soon(writer, rows)
        return
    try:
        sealing.seal_pending()
    except Exception:  # sealing catches up on the next write or `tracking seal`
        logger.exception("sealing after write failed")
