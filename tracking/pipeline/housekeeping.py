"""Housekeeping the writer thread runs after each round (``tracking.pipeline.writer.Job``).

Registered with the writer by ``tracking.pipeline.handoff``; the writer imports none of this.

- ``SpoolReplay``: replays the durable spool every ``TRACKING_SPOOL_REPLAY_INTERVAL`` seconds
  (and in the writer's first round), or as soon as the writer is woken (``tracking flush``),
  after adopting the journals of processes that died (``tracking.pipeline.journal.adopt``);
- ``GeoRetry``: completes rows stored without geolocation once the provider answers again;
- ``Sealing``: seals what this process committed, at most every ``TRACKING_SEAL_INTERVAL``
  seconds (``rows_committed``, the after-commit hook of ``ingest``, decides);
- ``Partitions``: keeps next months' partitions in place (PostgreSQL, partitioned table);
- ``Judging``: stores synchronous requests' intake events with their verdict
  (``judge_soon``), and what a process that died left in the intake (``judge_unjudged``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from tracking.conf import tracking_settings
from tracking.enrich import geo
from tracking.events import Event
from tracking.integrity import sealing
from tracking.pipeline import intake, journal, spool
from tracking.pipeline.ingest import ingest
from tracking.pipeline.writer import Writer, get_writer
from tracking.storage import partitioning

logger = logging.getLogger("tracking.writer")

GEO_RETRY_INTERVAL = 60.0  # seconds between attempts to complete rows stored without geo
# Seconds between checks that next months' partitions exist (PostgreSQL, partitioned table):
# one catalogue query per hour per process, DDL only when a month is missing.
PARTITION_CHECK_INTERVAL = 3600.0
JUDGE_BATCH = intake.BATCH  # events per batch step of the judging job


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


# Seconds (at least twice TRACKING_SEAL_INTERVAL) a writer leaves the rows another process
# wrote, and will seal with the leaves it kept, before sealing them itself by reading them
# back; well below TRACKING_UNSEALED_BEHIND_HEAD_GRACE's default.
OTHERS_GRACE = 60.0


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
            sealed = sealing.seal_pending(wait=True, others_grace=max(OTHERS_GRACE, 2 * interval))
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


# Hands a batch of intake events to the Celery workers (True) or declines (False: stored
# here). Set by tracking.pipeline.handoff (``judge_elsewhere``), which knows the broker.
_elsewhere: list[Callable[[list[Event]], bool]] = []


def judge_elsewhere(publish: Callable[[list[Event]], bool]) -> None:
    _elsewhere[:] = [publish]


class Judging:
    """Store the events synchronous requests committed to the intake (``judge_soon``) through
    the batch step, one batch per writer round (a round ends at most
    ``TRACKING_FLUSH_INTERVAL`` seconds after the events were handed over); when the writer
    starts and every ``intake.SCAN_INTERVAL`` seconds, also what a process that died left in
    the intake (``judge_unjudged``). With the Celery hand-off the batches go to the workers
    (``judge_elsewhere``), which delete the intake rows once stored; a batch the broker
    does not take is stored here, and one the workers never store is left to the recovery
    scan."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.lock = threading.Lock()
        # Held while a batch is being stored: ``take`` waits for it, so what it returns and
        # what was stored before cover every event handed over until then.
        self.storing = threading.Lock()
        self.scanned: float | None = None
        self.judging = 0  # events taken and not yet stored (``pending``: flush waits)

    @contextmanager
    def taken(self) -> Iterator[list[Event]]:
        """The events handed over and not yet stored, for the caller to store now: after the
        batch being stored, if any, has committed, and holding off the next one until the
        caller is done, so this process's batch steps never run side by side (each sees
        what the one before it committed)."""
        with self.storing:
            with self.lock:
                events, self.events = self.events, []
            yield events

    def add(self, writer: Writer, events: Sequence[Event]) -> None:
        with self.lock:
            self.events.extend(events)
            # Bounded like the queue; events let go stay in the intake for the recovery scan.
            excess = len(self.events) - writer.queue.maxsize
            if excess > 0:
                del self.events[:excess]
        writer.ensure_started()

    def run(self, writer: Writer, *, stopping: bool) -> None:
        with self.storing:
            with self.lock:
                events, self.events = self.events, []
                self.judging = len(events)
            try:
                for i in range(0, len(events), JUDGE_BATCH):
                    batch = events[i : i + JUDGE_BATCH]
                    try:
                        if _elsewhere and _elsewhere[0](batch):
                            writer.count("judging_published", len(batch))
                            continue
                        writer.count("judged", intake.judge(batch, fresh=True).stored)
                    except Exception:  # still in the intake: the recovery scan stores them
                        logger.exception("storing %d intake events failed", len(batch))
                        writer.count("judge_failures")
            finally:
                self.judging = 0
        now = time.monotonic()
        if self.scanned is not None and now - self.scanned < intake.SCAN_INTERVAL:
            return
        self.scanned = now
        try:
            writer.count("recovered", judge_unjudged())
        except Exception:
            logger.exception("storing events left in the intake failed; retrying later")
            writer.count("judge_failures")

    def pending(self) -> bool:
        return bool(self.events) or self.judging > 0


def judge_soon(events: Sequence[Event]) -> None:
    """Have this process's writer store ``events`` (committed to the intake) with their
    verdict; without a writer job for it, the caller's thread does."""
    if not events:
        return
    writer = get_writer()
    job = writer.job(Judging)
    if job is None:
        intake.judge(events, fresh=True)
        return
    job.add(writer, events)


@contextmanager
def handed_over() -> Iterator[list[Event]]:
    """This process's intake events not stored yet, taken from its writer (see
    ``Judging.taken``): a synchronous request whose verdict is due before its response
    stores them in its batch, so detection sees every earlier event of the process, as an
    import of the same events would."""
    writer = get_writer()
    job = writer.job(Judging)
    if job is None:
        yield []
        return
    with job.taken() as events:
        yield events


def judge_unjudged(*, older_than: float | None = intake.GRACE) -> int:
    """Store what was left in the intake for more than ``older_than`` seconds (a process
    died between its commit and the batch step); returns how many activities were stored."""
    return intake.recover(older_than=older_than)


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
        _seal_soon(rows)
        return
    try:
        sealed = sealing.seal_pending()
    except Exception:  # sealing catches up on the next write or `tracking seal`
        logger.exception("sealing after write failed")
        return
    if sealed < rows:
        # Another process held the chain lock (this call only tries it) and may have read
        # the unsealed rows before these were committed: this process's writer seals them
        # next, waiting for the lock, instead of leaving the last rows of a burst for
        # whichever write comes next.
        _seal_soon(rows)


def _seal_soon(rows: int) -> None:
    """Have this process's writer seal ``rows`` committed rows (``Sealing.soon``)."""
    writer = get_writer()
    job = writer.job(Sealing)
    if job is not None:
        job.soon(writer, rows)
