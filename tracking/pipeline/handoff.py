"""Where an event goes after ``ActivityTracker.record``, and how the write path is assembled.

- ``write_now(events)``: the synchronous path: the events are durable in the database before
  the caller goes on. Stored in full there (the batch step, verdict included) when
  ``TRACKING_VERDICT_BEFORE_RESPONSE`` lists their type or the caller is inside a transaction
  (another connection could not see them yet); otherwise committed to the intake
  (``tracking.pipeline.intake``: one INSERT) and stored with their verdict by this process's
  writer within ``TRACKING_FLUSH_INTERVAL`` (``housekeeping.judge_soon``). If even that fails
  unexpectedly the events go to the spool, and if the spool fails to the writer's queue.
  The caller never sees an error.
- ``submit(event)``: the ``async_log=True`` path, chosen by ``TRACKING_ASYNC_HANDOFF``: the
  event is journaled (``tracking.pipeline.journal``; fdatasynced in groups with
  ``TRACKING_DURABLE_HANDOFF``), then queued for the writer, which publishes or stores it in
  batches and releases the journal's copy.
- ``store(events)``: ``ingest``, then keep what it could not write (rejected events in the
  spool's dead-letter file, unwritten ones in the spool). Imports store through it.

Dependencies point one way: this module wires ``ingest`` into the writer (its feed, with the
Celery publisher in front of it), the spool into the writer (what keeps a failed batch), the
housekeeping jobs into the writer, and the sealing policy into ``ingest``'s after-commit hook.
"""

from __future__ import annotations

import atexit
import logging
import time
from collections.abc import Iterable, Sequence

from django.db import connection

from tracking.conf import on_reload, tracking_settings
from tracking.events import Event
from tracking.pipeline import confirm, housekeeping, intake, journal, spool, wire, writer
from tracking.pipeline.ingest import IngestResult, after_commit, ingest, stored_ids

logger = logging.getLogger("tracking.recording")

BROKER_RETRY_AFTER = 5.0  # seconds on the local path after the broker failed

# Failures outside the writer: building an event (record_errors) and synchronous writes that
# had to fall back to the spool (sync_errors). Reported by ``tracking.pipeline.writer.stats()``.
_counters = {"sync_errors": 0, "record_errors": 0}
_broker = {"down_until": 0.0}


def count(name: str, n: int = 1) -> None:
    _counters[name] = _counters.get(name, 0) + n


def store(
    events: Iterable[Event | dict],
    *,
    source: str,
    assume_new: bool = False,
    detect: bool = True,
) -> IngestResult:
    """``ingest(events)``, keeping what it could not write: rejected events go to the
    dead-letter file, events the unavailable database did not take to the spool
    (``spooled``). Raises only if the spool cannot take them."""
    result = ingest(events, source=source, assume_new=assume_new, detect=detect)
    spool.keep_dead_letters(result.dead_letters)
    if result.unwritten:
        spool.append(result.unwritten)
        result.spooled += len(result.unwritten)
    return result


def write_now(events: Sequence[Event], *, assume_new: bool = False) -> None:
    """``assume_new``: the events were just built (fresh ids), see ``ingest``."""
    try:
        now, later = _verdict_now(events)
        if later:
            try:
                intake.store(later)
            except intake.Unusable:  # no encryption key for the intake: stored in full now
                now, later = [*now, *later], []
        if now:
            _store_now(now, assume_new=assume_new)
        if later:
            _judge_soon(later)
    except Exception:  # the user's request must succeed
        _counters["sync_errors"] += len(events)
        logger.exception("tracking: synchronous write failed; keeping %d events", len(events))
        _keep(events)


def _store_now(events: Sequence[Event], *, assume_new: bool) -> None:
    """The batch step in the caller, with the process's intake events not stored yet: they
    came first, and the verdict of these events must not depend on whether the writer's round
    came before them (an import of the same events sees them all)."""
    if connection.in_atomic_block:
        store(events, source="sync", assume_new=assume_new)
        return
    with housekeeping.handed_over() as earlier:
        result = store([*earlier, *events], source="sync", assume_new=assume_new)
        intake.release(earlier, result)  # what store() could not write it spooled


def _verdict_now(events: Sequence[Event]) -> tuple[list[Event], list[Event]]:
    """(events judged before the caller goes on, events judged by the writer)."""
    if connection.in_atomic_block or tracking_settings.ASYNC_HANDOFF == "sync":
        # ATOMIC_REQUESTS or a caller's transaction: the writer's connection could not see
        # the intake rows before the caller commits, so the batch step runs here. The "sync"
        # hand-off asks for every write in the request, without a writer thread.
        return list(events), []
    types = _before_response()
    if "*" in types:
        return list(events), []
    now: list[Event] = []
    later: list[Event] = []
    for event in events:
        wanted = str(event.type).upper() in types or (event.verdict or {}).get("findings")
        (now if wanted or not intake.accepts(event) else later).append(event)
    return now, later


_before: list[frozenset[str]] = []  # the parsed setting, read once per settings reload


def _before_response() -> frozenset[str]:
    if _before:
        return _before[0]
    types = tracking_settings.VERDICT_BEFORE_RESPONSE
    if isinstance(types, str):
        types = [types]
    found = frozenset(str(t).upper() for t in types or ())
    _before[:] = [found]
    return found


on_reload(_before.clear)


def _judge_soon(events: list[Event]) -> None:
    try:
        housekeeping.judge_soon(events)
    except Exception:  # in the intake: the writers' recovery scan stores them
        logger.exception("tracking: handing %d intake events to the writer failed", len(events))


def _keep(events: Sequence[Event]) -> None:
    try:
        spool.append(events)
    except Exception:
        logger.exception("tracking: spool unavailable; events handed to the writer")
        w = writer.get_writer()
        w.retry.extend(events)
        w.wake()


def submit(event: Event) -> None:
    mode = tracking_settings.ASYNC_HANDOFF
    if mode == "sync":
        write_now([event], assume_new=True)
        return
    # Acknowledged = in this process's journal (survives a SIGKILL of the process); with
    # DURABLE_HANDOFF also fdatasynced (survives a machine crash), one sync per group of
    # requests. Without SPOOL_DIR in a private temporary folder (spool.default_folder).
    # The Celery publisher packs the JSON the journal made (tracking.pipeline.wire).
    journal.append(
        event, durable=bool(tracking_settings.DURABLE_HANDOFF), keep_json=mode == "celery"
    )
    writer.submit(event)


def write_batch(batch: list[Event], assume_new: bool) -> dict[str, int]:
    """The writer's feed: publish the batch to Celery (``TRACKING_ASYNC_HANDOFF = "celery"``)
    or store it here; returns the counters for the writer's stats."""
    counts: dict[str, int] = {}
    if _celery_up():
        if _publish(batch):
            return {"published": len(batch)}
        counts["broker_fallbacks"] = len(batch)
    result = store(batch, source="writer", assume_new=assume_new)
    counts.update(
        written=result.stored,
        duplicates=result.duplicates,
        rejected=result.rejected,
        spooled=result.spooled,
        failed=result.failed,
    )
    return counts


def _publish(batch: list[Event]) -> bool:
    from tracking.pipeline.tasks import publish  # optional dependency: celery

    try:
        message = publish(batch)
    except Exception as exc:  # broker down: local path
        _broker_down(exc, len(batch))
        return False
    journal.published(batch)
    job = writer.get_writer().job(Confirming)
    if job is not None and message and _confirm_after() > 0:
        job.published(batch, message)
    return True


def _publish_intake(batch: list[Event]) -> bool:
    """The ``Judging`` job's batch of intake events to the Celery workers, which store them
    and delete their intake rows: with the Celery hand-off a web process does not run the
    synchronous path's batch step either. False (stored here) on another hand-off or with
    the broker down. Not confirmed like ``_publish``: the intake rows are the durable copy,
    and what the workers never store the recovery scan does."""
    if not _celery_up():
        return False
    from tracking.pipeline.tasks import publish  # optional dependency: celery

    try:
        publish(batch, intake_rows=True)
    except Exception as exc:  # broker down: the batch step runs here
        _broker_down(exc, len(batch))
        return False
    return True


def _celery_up() -> bool:
    """The Celery hand-off is on and its broker not known to be down (``_broker_down``)."""
    return tracking_settings.ASYNC_HANDOFF == "celery" and time.monotonic() >= _broker["down_until"]


def _broker_down(exc: Exception, count: int) -> None:
    logger.error("celery broker unavailable (%s): writing %d events locally", exc, count)
    # Don't pay a failed connection per batch: go local for a while, then try again.
    _broker["down_until"] = time.monotonic() + BROKER_RETRY_AFTER


def _confirm_after() -> float:
    return float(tracking_settings.CELERY_CONFIRM_AFTER or 0)


def _release(batch: list[Event]) -> None:
    """The writer's ``released``: the journal lines of a stored or spooled batch go; those of
    a published one stay until the database holds its events (``Confirming``)."""
    job = writer.get_writer().job(Confirming)
    if job is None or not job.sent:
        journal.release(batch)
        return
    journal.release(e for e in batch if not job.sent.holds(e.id))


class Confirming:
    """The writer's job for published batches (``tracking.pipeline.confirm``): asks the
    database which of their events it holds, releases those journal lines, publishes a
    batch again once it is ``TRACKING_CELERY_CONFIRM_AFTER`` seconds old and still missing
    events while the queue is empty (a backlog holds it, not a loss), and stores it here
    after ``confirm.MAX_ATTEMPTS`` publications. When the writer stops, what the database
    does not hold within ``SETTLE`` seconds stays journaled: the next process replays it."""

    SETTLE = 2.0

    def __init__(self) -> None:
        self.sent = confirm.Pending(limit=10 * int(tracking_settings.QUEUE_SIZE))

    def published(self, batch: list[Event], message: str) -> None:
        let_go = self.sent.add((e.id for e in batch), message)
        if let_go:
            logger.warning(
                "tracking: %d published events let go unconfirmed (more than %d wait)",
                len(let_go),
                self.sent.limit,
            )
            writer.get_writer().count("unconfirmed", len(let_go))
            journal.release_ids(let_go)

    def run(self, w: writer.Writer, *, stopping: bool) -> None:
        if not len(self.sent):
            return
        if stopping:
            deadline = time.monotonic() + self.SETTLE
            while len(self.sent) and time.monotonic() < deadline:
                self._check(w, self.sent.due(everything=True), final=True)
                if len(self.sent):
                    time.sleep(0.1)
            return
        due = self.sent.due()
        if due:
            self._check(w, due, final=False)

    def _check(self, w: writer.Writer, due: list[confirm.Batch], *, final: bool) -> None:
        try:
            found = stored_ids([i for b in due for i in b.ids])
        except Exception:  # the database is away: ask again later
            logger.exception("checking %d published batches failed", len(due))
            for b in due:
                self.sent.later(b)
            return
        released: list[str] = []
        overdue: list[confirm.Batch] = []
        after = _confirm_after()
        for b in due:
            released.extend(self.sent.stored(b, found))
            if b.ids and not final:
                self.sent.later(b)
                if self.sent.overdue(b, after):
                    overdue.append(b)
        journal.release_ids(released)
        w.count("confirmed", len(released))
        if overdue and not _queue_busy():
            for b in overdue:
                self._again(w, b)

    def _again(self, w: writer.Writer, b: confirm.Batch) -> None:
        from tracking.pipeline.tasks import send  # optional dependency: celery

        missing = len(b.ids)
        if b.attempts < confirm.MAX_ATTEMPTS and time.monotonic() >= _broker["down_until"]:
            try:
                send(b.message, b.size)
            except Exception as exc:
                _broker_down(exc, missing)
            else:
                logger.warning(
                    "tracking: %d published events not stored after %g s: published again",
                    missing,
                    _confirm_after(),
                )
                self.sent.republished(b)
                w.count("republished", missing)
                return
        events, _ = wire.unpack([b.message])
        ids = set(b.ids)
        store([e for e in events if e.get("id") in ids], source="writer")
        journal.release_ids(self.sent.forget(b))
        w.count("stored_unconfirmed", missing)

    def pending(self) -> bool:
        return False  # confirmations never hold up ``flush``: the workers may be slow


def _queue_busy() -> bool:
    from tracking.pipeline.tasks import queued  # optional dependency: celery

    try:
        return queued() > 0
    except Exception:  # the broker cannot say: publish again (stored once all the same)
        logger.debug("tracking: queue length unavailable", exc_info=True)
        return False


def _broker_settings_changed() -> None:
    _broker["down_until"] = 0.0  # a new broker (or hand-off mode) is tried at once


def stats() -> dict:
    job = writer.get_writer().job(Confirming)
    return dict(_counters, awaiting_confirmation=len(job.sent) if job is not None else 0)


def _exit() -> None:
    # Registered after the writer's own atexit hook, so it runs first (LIFO): drain the
    # writer, then delete the journal files it released (a second shutdown is a no-op).
    writer.shutdown()
    journal.close()


on_reload(_broker_settings_changed)
writer.configure(
    feed=write_batch,
    keep=spool.append,
    jobs=(*housekeeping.JOBS, Confirming),
    stats=[stats, journal.stats],
    released=_release,
)
atexit.register(_exit)
after_commit(housekeeping.rows_committed)
housekeeping.judge_elsewhere(_publish_intake)
