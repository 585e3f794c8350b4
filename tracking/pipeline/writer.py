"""The in-process background writer: a bounded queue drained in batches by one thread.

``submit(event)`` only puts the event on the queue (the request path stays at building the
event). The thread takes up to ``TRACKING_BATCH_SIZE`` events or waits at most
``TRACKING_FLUSH_INTERVAL`` seconds, then writes the batch through ``tracking.pipeline.ingest``, or —
with ``TRACKING_ASYNC_HANDOFF = "celery"`` — publishes it to ``tracking.tasks.ingest_events``
and falls back to the local path if the broker is down. Nothing is dropped:

- queue full → the caller writes the event synchronously (``sync_fallbacks``);
- database unavailable → the batch goes to the durable spool (``spooled``), replayed by this
  thread every ``TRACKING_SPOOL_REPLAY_INTERVAL`` seconds and by ``tracking flush``;
- spool unwritable too → the batch is kept in memory and retried (``failed`` counts attempts),
  at most ``TRACKING_QUEUE_SIZE`` events: beyond that the oldest are dropped (``dropped``).

It flushes on interpreter exit (atexit) and restarts in a child after ``fork`` (gunicorn
``--preload``): the child starts with an empty queue and its own thread.

Acknowledgement: an event is *acknowledged* when ``submit`` returns. In this mode that means
it is in memory: a SIGKILL before the next batch is written loses at most the queue (up to
``TRACKING_FLUSH_INTERVAL`` seconds of events). ``TRACKING_DURABLE_HANDOFF = True`` closes the
window: ``submit`` appends and fsyncs the event to the spool first, and this thread replays it.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import sys
import threading
import time
from typing import Any

from tracking.conf import on_reload, tracking_settings
from tracking.events import Event

logger = logging.getLogger("tracking.writer")

_STOP = object()
_FLUSH = object()  # wakes the thread to write what it has now
BROKER_RETRY_AFTER = 5.0  # seconds on the local path after the broker failed
GEO_RETRY_INTERVAL = 60.0  # seconds between attempts to complete rows stored without geo
# Seconds between checks that next months' partitions exist (PostgreSQL, partitioned table):
# one catalogue query per hour per process, DDL only when a month is missing.
PARTITION_CHECK_INTERVAL = 3600.0


class Writer:
    def __init__(self) -> None:
        self.queue: queue.Queue = queue.Queue(maxsize=max(int(tracking_settings.QUEUE_SIZE), 1))
        self.batch_size = max(int(tracking_settings.BATCH_SIZE), 1)
        self.interval = max(float(tracking_settings.FLUSH_INTERVAL), 0.001)
        self.replay_interval = float(tracking_settings.SPOOL_REPLAY_INTERVAL)
        self.lock = threading.Lock()
        self.wakeup = threading.Event()
        # Set when a batch is full or a marker waits: the only times a filling batch wakes the
        # thread before its flush interval (see ``_take``).
        self.ready = threading.Event()
        # Events still missing from the batch being filled (read by submit without a lock: a
        # stale value only delays the wake-up to the end of the flush interval).
        self.wanted = self.batch_size
        self.thread: threading.Thread | None = None
        self.pid = os.getpid()
        self.retry: list[Event] = []
        self.counters = {
            "enqueued": 0,
            "written": 0,
            "duplicates": 0,
            "failed": 0,
            "rejected": 0,
            "spooled": 0,
            "sync_fallbacks": 0,
            "broker_fallbacks": 0,
            "published": 0,
            "replayed": 0,
            "dropped": 0,
            "sealed": 0,
            "seal_failures": 0,
            "partition_failures": 0,
        }
        self._last_replay = 0.0
        self._fresh = 0
        self._broker_down_until = 0.0
        self._last_geo_retry = 0.0
        # Deferred sealing (TRACKING_SEAL_INTERVAL > 0): rows committed since the last seal.
        self._seal_rows = 0
        self._seal_wanted = False
        self._last_seal: float | None = None
        self._last_partition_check: float | None = None

    # -- producer side ---------------------------------------------------------
    def _count(self, name: str, n: int = 1) -> None:
        with self.lock:
            self.counters[name] += n

    def ensure_started(self) -> None:
        if self.thread is not None and self.thread.is_alive():
            return
        with self.lock:
            if self.thread is None or not self.thread.is_alive():
                _shorten_switch_interval()
                self.thread = threading.Thread(
                    target=self._run, name="tracking-writer", daemon=True
                )
                self.thread.start()

    def submit(self, event: Event) -> None:
        self.ensure_started()
        try:
            self.queue.put_nowait(event)
        except queue.Full:
            # Never drop: the caller pays for one synchronous write instead.
            self._count("sync_fallbacks")
            logger.warning("tracking queue full: writing synchronously")
            self._write([event], assume_new=True)
            return
        self._count("enqueued")
        if self.queue.qsize() >= self.wanted:
            self.ready.set()

    def seal_soon(self, rows: int) -> None:
        """Rows were committed: have this process's writer thread seal them (at most every
        ``TRACKING_SEAL_INTERVAL`` seconds, sooner once ``SEAL_BATCH_SIZE`` rows wait)."""
        with self.lock:
            self._seal_rows += rows
            self._seal_wanted = True
        self.ensure_started()

    def wake(self) -> None:
        self.ensure_started()
        self._last_replay = 0.0
        self.wakeup.set()

    # -- consumer side ---------------------------------------------------------
    def _take(self) -> tuple[list[Event], bool]:
        """The next batch: up to ``batch_size`` events, taken at most ``interval`` seconds
        after the first one arrived (sooner when the batch is full or a marker waits).

        The thread blocks on the queue only while it is empty. While a batch fills it sleeps
        on ``ready`` instead of ``queue.get``: a blocked ``get`` is woken by every ``put``,
        i.e. once per request, and each wake-up made the request thread wait for the GIL."""
        batch: list[Event] = []
        try:
            first = self.queue.get(timeout=self.interval)
        except queue.Empty:
            return batch, False
        deadline = time.monotonic() + self.interval
        item = first
        while True:
            if item is _STOP or item is _FLUSH:
                self.queue.task_done()
                return batch, item is _STOP
            self._fresh += 1
            batch.append(item)
            if len(batch) >= self.batch_size:
                return batch, False
            try:
                item = self.queue.get_nowait()
                continue
            except queue.Empty:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return batch, False
            self.wanted = self.batch_size - len(batch)
            if self.queue.qsize() < self.wanted:
                self.ready.wait(remaining)
            self.ready.clear()
            self.wanted = self.batch_size
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                return batch, False

    def _run(self) -> None:
        from django.db import close_old_connections, connection

        try:
            while True:
                batch, stop = self._take()
                # Queued events were built by submit's callers (fresh ids); events kept for a
                # retry may have reached the database before, so they take the lookup.
                fresh = not self.retry
                if self.retry:
                    batch = self.retry + batch
                    self.retry = []
                if batch:
                    close_old_connections()
                    try:
                        self._write(batch, assume_new=fresh)
                    finally:
                        self._done()
                        close_old_connections()  # honours CONN_MAX_AGE between batches
                self._maybe_replay()
                self._maybe_seal(force=stop)
                self._maybe_check_partitions()
                if stop:  # only the marker stops: it is consumed, never left for a successor
                    break
        finally:
            connection.close()

    def _done(self) -> None:
        # Only events taken from the queue in this round count towards task_done; retried
        # ones were marked when first taken.
        for _ in range(self._fresh):
            self.queue.task_done()
        self._fresh = 0

    def _write(self, batch: list[Event], *, assume_new: bool = False) -> None:
        from tracking.pipeline.ingest import ingest

        if (
            tracking_settings.ASYNC_HANDOFF == "celery"
            and time.monotonic() >= self._broker_down_until
            and self._publish(batch)
        ):
            return
        try:
            result = ingest(batch, source="writer", spool_failures=True, assume_new=assume_new)
        except Exception:  # noqa: BLE001 - counted and kept, never dropped
            logger.exception("tracking writer failed to write %d events", len(batch))
            self._count("failed", len(batch))
            self._keep(batch)
            return
        with self.lock:
            self.counters["written"] += result.stored
            self.counters["duplicates"] += result.duplicates
            self.counters["rejected"] += result.rejected
            self.counters["spooled"] += result.spooled
            self.counters["failed"] += result.failed

    def _keep(self, batch: list[Event]) -> None:
        from tracking.pipeline import spool

        try:
            spool.append(batch)
            self._count("spooled", len(batch))
        except Exception:  # noqa: BLE001
            logger.exception(
                "spool unavailable too: %d events kept in memory for retry", len(batch)
            )
            self.retry.extend(batch)
            # Bounded like the queue: memory must not grow while the spool stays unwritable.
            excess = len(self.retry) - max(1, int(tracking_settings.QUEUE_SIZE))
            if excess > 0:
                del self.retry[:excess]
                self._count("dropped", excess)
                logger.error("writer retry buffer full: %d oldest events dropped", excess)

    def _publish(self, batch: list[Event]) -> bool:
        from tracking.pipeline.tasks import publish

        try:
            publish(batch)
        except Exception as exc:  # noqa: BLE001 - broker down: local path
            logger.error(
                "celery broker unavailable (%s): writing %d events locally", exc, len(batch)
            )
            self._count("broker_fallbacks", len(batch))
            # Don't pay a failed connection per batch: go local for a while, then try again.
            self._broker_down_until = time.monotonic() + BROKER_RETRY_AFTER
            return False
        self._count("published", len(batch))
        return True

    def _maybe_replay(self) -> None:
        from tracking.pipeline import spool

        now = time.monotonic()
        durable = bool(tracking_settings.DURABLE_HANDOFF)
        if not durable and now - self._last_replay < self.replay_interval:
            return
        if durable and not self.wakeup.is_set() and now - self._last_replay < self.replay_interval:
            return
        self.wakeup.clear()
        self._last_replay = now
        try:
            if spool.pending():
                res = spool.replay()
                self._count("replayed", res.stored)
        except Exception:  # noqa: BLE001 - the next round tries again
            logger.exception("spool replay failed")
        self._maybe_retry_geo(now)

    def _maybe_seal(self, *, force: bool = False) -> None:
        """Seal what this process committed when the interval has passed (or many rows wait,
        or the writer stops). Waits for the chain lock: nothing queues behind this thread."""
        now = time.monotonic()
        interval = float(tracking_settings.SEAL_INTERVAL or 0)
        limit = max(1, int(tracking_settings.SEAL_BATCH_SIZE or 5000))
        with self.lock:
            if not self._seal_wanted:
                return
            due = (
                force
                or self._last_seal is None
                or self._seal_rows >= limit
                or now - self._last_seal >= interval
            )
            if not due:
                return
            self._seal_wanted = False
            self._seal_rows = 0
        self._last_seal = now
        from tracking.integrity.sealing import seal_pending

        try:
            sealed = seal_pending(wait=True)
        except Exception:  # noqa: BLE001 - counted and retried after the interval
            logger.exception("sealing committed activities failed; retrying later")
            with self.lock:
                self.counters["seal_failures"] += 1
                self._seal_wanted = True
            return
        self._count("sealed", sealed)

    def _maybe_check_partitions(self) -> None:
        """Keep next months' partitions in place (PostgreSQL with partitioning installed;
        a no-op elsewhere): at start, then at most once per ``PARTITION_CHECK_INTERVAL``."""
        now = time.monotonic()
        last = self._last_partition_check
        if last is not None and now - last < PARTITION_CHECK_INTERVAL:
            return
        self._last_partition_check = now
        from tracking.storage.partitioning import ensure_partitions

        try:
            created = ensure_partitions(refresh=True)
        except Exception:  # noqa: BLE001 - rows land in the default partition meanwhile
            logger.exception("ensuring monthly partitions failed; retrying in an hour")
            self._count("partition_failures")
            return
        if created:
            logger.info("created partitions %s", ", ".join(created))

    def _maybe_retry_geo(self, now: float) -> None:
        """Complete rows stored without geo once the provider answers again (only when this
        process stored such rows, so idle processes never scan for them)."""
        from tracking.enrich import geo

        if not geo.owed() or now - self._last_geo_retry < GEO_RETRY_INTERVAL:
            return
        self._last_geo_retry = now
        try:
            geo.retry_pending_geo()
        except Exception:  # noqa: BLE001
            logger.exception("retrying owed geolocation failed")

    # -- control ---------------------------------------------------------------
    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued event was handled (and, in durable mode, the spool
        replayed); True when done within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        q = self.queue
        if self.thread is not None and self.thread.is_alive():
            try:
                q.put_nowait(_FLUSH)
            except queue.Full:
                pass  # a full queue keeps the thread busy without waiting anyway
            self.ready.set()
        with q.all_tasks_done:
            while q.unfinished_tasks:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                q.all_tasks_done.wait(remaining)
        if tracking_settings.DURABLE_HANDOFF or self.retry:
            self.wake()
            from tracking.pipeline import spool

            while time.monotonic() < deadline:
                if not spool.pending() and not self.retry:
                    return True
                time.sleep(0.02)
            return False
        return True

    def stop(self, timeout: float = 10.0) -> None:
        thread = self.thread
        if thread is None or not thread.is_alive():
            return
        try:
            self.queue.put(_STOP, timeout=timeout)
        except queue.Full:
            logger.error("tracking writer did not stop: queue full")
            return
        self.ready.set()
        thread.join(timeout)

    def stats(self) -> dict[str, Any]:
        from tracking.pipeline import handoff

        with self.lock:
            out = dict(self.counters)
        out.update(handoff.stats())
        out["queue_depth"] = self.queue.qsize()
        out["queue_size"] = self.queue.maxsize
        out["alive"] = bool(self.thread and self.thread.is_alive())
        out["retry"] = len(self.retry)
        return out


def _shorten_switch_interval() -> None:
    """The writer thread runs CPU-bound batches (enrichment, detection, crypto) in the same
    interpreter as request threads; with the default 5 ms switch interval a request thread
    that released the GIL for socket I/O may wait that long to get it back, per wait. A
    shorter interval bounds that wait (process-wide; never lengthened here)."""
    wanted = tracking_settings.WRITER_SWITCH_INTERVAL
    if wanted is None:
        return
    try:
        wanted = float(wanted)
        if 0 < wanted < sys.getswitchinterval():
            sys.setswitchinterval(wanted)
    except (TypeError, ValueError):
        logger.warning("TRACKING_WRITER_SWITCH_INTERVAL %r ignored", wanted)


_writer: Writer | None = None
_writer_lock = threading.Lock()


def get_writer() -> Writer:
    global _writer
    if _writer is None or _writer.pid != os.getpid():
        with _writer_lock:
            if _writer is None or _writer.pid != os.getpid():
                _writer = Writer()
    return _writer


def submit(event: Event) -> None:
    get_writer().submit(event)


def seal_soon(rows: int) -> None:
    get_writer().seal_soon(rows)


def flush(timeout: float = 10.0) -> bool:
    return get_writer().flush(timeout) if _writer is not None else True


def stats() -> dict[str, Any]:
    return get_writer().stats()


def shutdown(timeout: float = 10.0) -> None:
    global _writer
    writer = _writer
    if writer is None or writer.pid != os.getpid():
        return
    writer.stop(timeout)  # the thread drains everything queued before the stop marker
    writer.flush(timeout)


def _settings_changed() -> None:
    # A new queue size or batch size applies to the next writer; the old one drains first.
    global _writer
    old = _writer
    if old is not None and old.pid == os.getpid() and old.thread and old.thread.is_alive():
        old.flush(5.0)
        old.stop(5.0)
    _writer = None


def _after_fork_in_child() -> None:
    global _writer, _writer_lock
    _writer = None  # the parent's queue and thread belong to the parent
    _writer_lock = threading.Lock()  # a parent thread may have held it at fork time
    from tracking.pipeline import spool

    spool.reset_after_fork()


on_reload(_settings_changed)
atexit.register(shutdown)
os.register_at_fork(after_in_child=_after_fork_in_child)
