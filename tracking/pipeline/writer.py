"""The in-process background writer: a bounded queue drained in batches by one thread.

``submit(event)`` only puts the event on the queue (the request path stays at building the
event). The thread takes up to ``TRACKING_BATCH_SIZE`` events or waits at most
``TRACKING_FLUSH_INTERVAL`` seconds, then hands the batch to the function it feeds. The
writer knows neither that function nor its housekeeping: ``tracking.pipeline.handoff``
``configure``s them (the feed writes through ``tracking.pipeline.ingest`` or publishes to
Celery; the jobs of ``tracking.pipeline.housekeeping`` replay the spool, seal, keep
partitions and retry geolocation, run by this thread after each round). Nothing is dropped
while the spool is writable:

- queue full → the caller writes the event synchronously (``sync_fallbacks``);
- the feed raises → the batch is kept (``keep``: the durable spool, ``spooled``);
- that fails too → the batch is kept in memory and retried (``failed`` counts attempts),
  at most ``TRACKING_QUEUE_SIZE`` events: beyond that the oldest are dropped (``dropped``).

It flushes on interpreter exit (atexit) and restarts in a child after ``fork`` (gunicorn
``--preload``): the child starts with an empty queue and its own thread.

Acknowledgement: an event is *acknowledged* when ``submit`` returns. The hand-off
(``tracking.pipeline.handoff.submit``) journals it first (``tracking.pipeline.journal``: a
write to a per-process file, fdatasynced in groups with ``TRACKING_DURABLE_HANDOFF``); this
thread tells the journal (``released``) once a batch was written, published or kept, and a
killed process's journal is replayed by the others. Without ``TRACKING_SPOOL_DIR`` there is no
journal: a SIGKILL loses what is queued (up to ``TRACKING_FLUSH_INTERVAL`` seconds of events).
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from django.db import close_old_connections, connection

from tracking.conf import on_reload, tracking_settings
from tracking.events import Event

logger = logging.getLogger("tracking.writer")

_STOP = object()
_FLUSH = object()  # wakes the thread to write what it has now

# feed(batch, assume_new) writes a batch and returns counters to add to the writer's stats.
Feed = Callable[[list[Event], bool], Mapping[str, int]]
# keep(batch) keeps a batch the feed failed to write (durably), or raises.
Keep = Callable[[list[Event]], Any]
# released(batch): the batch was written or kept; its write-ahead copies may go.
Released = Callable[[list[Event]], Any]


class Job(Protocol):
    """Housekeeping the writer thread runs after each round (one instance per writer)."""

    def run(self, writer: Writer, *, stopping: bool) -> None:
        """Do the work when due; ``stopping``: the writer's last round."""

    def pending(self) -> bool:
        """Work ``Writer.flush`` waits for (e.g. events in the durable spool)."""


class _Config:
    feed: Feed | None = None
    keep: Keep | None = None
    released: Released | None = None
    jobs: Sequence[Callable[[], Job]] = ()
    stats: Sequence[Callable[[], Mapping[str, Any]]] = ()


def configure(
    *,
    feed: Feed,
    keep: Keep,
    jobs: Sequence[Callable[[], Job]] = (),
    stats: Sequence[Callable[[], Mapping[str, Any]]] = (),
    released: Released | None = None,
) -> None:
    """Set what new writers feed and keep, the job factories they run, the extra
    counters their ``stats()`` include and what learns that a batch was written or kept
    (``released``: the journal) (``tracking.pipeline.handoff`` does this once)."""
    _Config.feed, _Config.keep, _Config.released = feed, keep, released
    _Config.jobs, _Config.stats = tuple(jobs), tuple(stats)


class Writer:
    def __init__(
        self,
        feed: Feed | None = None,
        keep: Keep | None = None,
        jobs: Sequence[Callable[[], Job]] | None = None,
    ) -> None:
        feed = feed or _Config.feed
        keep = keep or _Config.keep
        if feed is None or keep is None:
            raise RuntimeError(
                "the tracking writer has nothing to feed: import tracking.pipeline.handoff "
                "(done when the tracking app is ready) or pass feed= and keep="
            )
        self.feed: Feed = feed
        self.keep: Keep = keep
        self.jobs: list[Job] = [make() for make in (_Config.jobs if jobs is None else jobs)]
        self.queue: queue.Queue = queue.Queue(maxsize=max(int(tracking_settings.QUEUE_SIZE), 1))
        self.batch_size = max(int(tracking_settings.BATCH_SIZE), 1)
        self.interval = max(float(tracking_settings.FLUSH_INTERVAL), 0.001)
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
        self._fresh = 0

    def job(self, kind: type) -> Any:
        """This writer's job of class ``kind`` (None when not configured)."""
        return next((j for j in self.jobs if isinstance(j, kind)), None)

    # -- producer side ---------------------------------------------------------
    def count(self, name: str, n: int = 1) -> None:
        with self.lock:
            self.counters[name] = self.counters.get(name, 0) + n

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
            self.count("sync_fallbacks")
            logger.warning("tracking queue full: writing synchronously")
            self._write([event], assume_new=True)
            return
        self.count("enqueued")
        if self.queue.qsize() >= self.wanted:
            self.ready.set()

    def wake(self) -> None:
        """Run the jobs now (``wakeup`` is set: the spool replay job treats it as due)."""
        self.ensure_started()
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
                self._run_jobs(stopping=stop)
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
        try:
            counts = self.feed(batch, assume_new)
        except Exception:  # counted and kept, never dropped
            logger.exception("tracking writer failed to write %d events", len(batch))
            self.count("failed", len(batch))
            self._keep(batch)
            return
        with self.lock:
            for name, n in counts.items():
                self.counters[name] = self.counters.get(name, 0) + n
        self._released(batch)

    def _released(self, batch: list[Event]) -> None:
        if _Config.released is not None:
            try:
                _Config.released(batch)
            except Exception:  # the events stay journaled: replayed (deduplicated) later
                logger.exception("tracking writer could not release %d events", len(batch))

    def _keep(self, batch: list[Event]) -> None:
        try:
            self.keep(batch)
            self.count("spooled", len(batch))
            self._released(batch)
        except Exception:
            logger.exception(
                "spool unavailable too: %d events kept in memory for retry", len(batch)
            )
            self.retry.extend(batch)
            # Bounded like the queue: memory must not grow while the spool stays unwritable.
            excess = len(self.retry) - self.queue.maxsize
            if excess > 0:
                del self.retry[:excess]
                self.count("dropped", excess)
                logger.error("writer retry buffer full: %d oldest events dropped", excess)

    def _run_jobs(self, *, stopping: bool) -> None:
        for job in self.jobs:
            try:
                job.run(self, stopping=stopping)
            except Exception:  # a job's failure never stops the writer
                logger.exception("tracking writer job %s failed", type(job).__name__)

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
        if self.retry or self._jobs_pending():
            self.wake()
            while time.monotonic() < deadline:
                if not self.retry and not self._jobs_pending():
                    return True
                time.sleep(0.02)
            return False
        return True

    def _jobs_pending(self) -> bool:
        return any(job.pending() for job in self.jobs)

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
        with self.lock:
            out = dict(self.counters)
        for extra in _Config.stats:
            out.update(extra())
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


on_reload(_settings_changed)
atexit.register(shutdown)
os.register_at_fork(after_in_child=_after_fork_in_child)
