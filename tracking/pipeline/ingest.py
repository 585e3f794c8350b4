"""The one batch step every stored activity goes through (see docs/ARCHITECTURE.md).

``ingest(events)``:

1. drops ids already stored (imports re-run, at-least-once delivery) and repeats in the batch;
2. enriches: IP → geo/ASN, User-Agent → device (pre-filled ``enrichment`` of imports is kept);
3. redacts headers/params again (idempotent) and clamps every field to its column;
4. sorts by timestamp and builds unsaved ``Activity`` objects, resolving users (live events
   trust the request's user id; see ``rows.Users``);
5. runs detection (``detect=False``: profiles learn, no verdict), hands its findings to the
   hooks registered with ``after_detection`` (the block requests of ``tracking.respond``),
   merges imported verdicts;
6. computes each row MAC, seals the rows of a batch of ``SEAL_ON_INSERT_ROWS`` or more
   (``sealing.seal_inserting``: each row's ``seq`` is set before its INSERT, under the chain
   lock; not for a request's own batch, source ``"sync"``, nor rows still owed their
   geolocation), bulk-inserts activities and findings,
   updates ``Rollup`` rows and writes the batch's outbox entry for alerts and forwarders
   (``tracking.delivery``) in one transaction;
7. after commit, calls the hooks registered with ``after_commit`` with the rows it left
   unsealed (sealing).

Synchronous requests reach it through ``tracking.pipeline.intake`` (their event committed
before the response, stored here right after), like every other path.

It takes the events it writes and returns what it could not write; keeping those is the
caller's job (``tracking.pipeline.handoff``, the spool's replay, the Celery task). An event
that can never become a row (bad id, bad timestamp...) is *rejected*: logged, counted and
returned in ``IngestResult.dead_letters`` with its reason. If the batch insert fails, every
event is retried alone so one bad row never loses the others. When the database itself is
unavailable, the events not stored are returned in ``IngestResult.unwritten``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from django.db import (
    DatabaseError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    connection,
    connections,
    router,
    transaction,
)

from detectors.base import SEVERITY_RANK
from tracking.binding import server_bound_cursor
from tracking.conf import tracking_settings
from tracking.delivery import hooks as delivery
from tracking.detection import runner as detection
from tracking.events import Event
from tracking.gcpause import gc_paused
from tracking.integrity import macs as integrity
from tracking.integrity import sealing
from tracking.models import Activity, Finding
from tracking.pipeline.rows import (
    InvalidEvent,
    Users,
    as_event,
    attach_users,
    build_activity,
    imported_findings,
    item_id,
    merge_verdict,
)
from tracking.storage import copyinsert, rollups

logger = logging.getLogger("tracking.ingest")

# Batches of at least this many rows are sealed as they are inserted (``seal_inserting``);
# smaller ones by the interval sealer (``TRACKING_SEAL_INTERVAL``), so a quiet site does not
# make (and forward to its SIEM) one seal per event.
SEAL_ON_INSERT_ROWS = 50

# Sources whose batch step runs in the request being answered (``tracking.pipeline.handoff``):
# their rows are not sealed as they are inserted.
REQUEST_SOURCES = frozenset({"sync"})


@dataclass
class IngestResult:
    stored: int = 0
    duplicates: int = 0
    failed: int = 0  # rejected (invalid) + unwritten (database unavailable)
    ids: list[str] = field(default_factory=list)
    rejected: int = 0
    spooled: int = 0  # of the unwritten events, kept in the spool by the caller
    errors: list[str] = field(default_factory=list)
    rejected_ids: list[str] = field(default_factory=list)
    # What could not be written: the rejected events with their reason (for a dead-letter
    # file), and the events the unavailable database did not take (to keep and retry).
    dead_letters: list[tuple[Any, str]] = field(default_factory=list)
    unwritten: list[Event | dict] = field(default_factory=list)
    unavailable: str = ""  # the database error that left events unwritten
    sealed: int = 0  # of the stored rows, sealed as they were inserted (``seal_inserting``)

    def add(self, other: IngestResult) -> IngestResult:
        self.stored += other.stored
        self.duplicates += other.duplicates
        self.failed += other.failed
        self.rejected += other.rejected
        self.spooled += other.spooled
        self.ids.extend(other.ids)
        self.errors.extend(other.errors[:100])
        self.rejected_ids.extend(other.rejected_ids)
        self.dead_letters.extend(other.dead_letters)
        self.unwritten.extend(other.unwritten)
        self.sealed += other.sealed
        return self


def _unavailable(exc: BaseException) -> bool:
    return isinstance(exc, OperationalError | InterfaceError) and not isinstance(
        exc, IntegrityError
    )


class _DetectionFailed(Exception):
    """Detection raised inside the batch's transaction, which may no longer be usable."""


# What detection sets on an activity (``runner.apply_verdict``): put back when a failed
# detection's batch is written again without it.
_VERDICT_FIELDS = ("tags", "risk_score", "severity", "flagged", "review_status")


def _detect(acts: list[Activity], *, learn_only: bool = False) -> list:
    try:
        return list(detection.detect_batch(acts, learn_only=learn_only) or [])
    except Exception as exc:  # a detector bug must not lose the audit log
        if isinstance(exc, DatabaseError) and _unavailable(exc):
            raise  # the database is down: the caller spools the batch
        raise _DetectionFailed from exc


# A batch step's pairs: each row with the event it was built from.
Pairs = Sequence[tuple[Event, Activity]]


def _insert(pairs: Pairs, *, learn_only: bool, seal: bool) -> int:
    """Detect, then write the batch in one transaction (detection shares it: no savepoint
    round trips); when detection fails the whole transaction is rolled back and the batch
    written again without it. ``seal``: seal the rows as they are inserted. Returns how many
    rows were sealed."""
    acts = [a for _, a in pairs]
    before = [tuple(getattr(a, f) for f in _VERDICT_FIELDS) for a in acts]
    try:
        try:
            return _write(pairs, detect=True, learn_only=learn_only, seal=seal)
        except _DetectionFailed as exc:
            logger.error(
                "detection failed for a batch; stored without findings", exc_info=exc.__cause__
            )
            _restore_verdicts(acts, before)
            return _write(pairs, detect=False, seal=seal)
    except BaseException:
        # Nothing was stored: a batch written again (one by one, or after its users were
        # resolved) is judged afresh, not on top of the verdicts of the rolled-back attempt.
        _restore_verdicts(acts, before)
        raise


def _restore_verdicts(acts: list[Activity], before: list[tuple]) -> None:
    for act, values in zip(acts, before, strict=True):
        for name, value in zip(_VERDICT_FIELDS, values, strict=True):
            setattr(act, name, list(value) if isinstance(value, list) else value)


def _write(pairs: Pairs, *, detect: bool, learn_only: bool = False, seal: bool = False) -> int:
    try:
        return _write_batch(pairs, detect=detect, learn_only=learn_only, seal=seal)
    except BaseException:
        for _, act in pairs:  # rolled back: the numbers taken are not the rows' any more
            act.seq = None
        raise


def _write_batch(pairs: Pairs, *, detect: bool, learn_only: bool, seal: bool) -> int:
    with transaction.atomic():
        acts = [a for _, a in pairs]
        findings = _detect(acts, learn_only=learn_only) if detect else []
        found: dict[Any, set[tuple]] = {}
        for f in findings:
            found.setdefault(f.activity_id, set()).add((f.detector, f.tag))
        for hook in _detected:
            hook(findings)
        leaves = []
        for event, act in pairs:
            verdict = event.verdict or {}
            merge_verdict(act, verdict)
            if verdict.get("findings"):
                findings.extend(imported_findings(act, verdict, found.setdefault(act.id, set())))
            if act.severity not in SEVERITY_RANK:
                act.severity = ""
            act.mac, leaf = integrity.mac_and_leaf(act)
            leaves.append((act.id, act.mac, leaf))
        sealed = 0
        if seal and len(acts) >= SEAL_ON_INSERT_ROWS:
            # Rows owed their geolocation are completed (and MACed again) later: sealed
            # after it, by the sealer.
            sealed = sealing.seal_inserting(
                [
                    (act, leaf)
                    for act, (_, _, leaf) in zip(acts, leaves, strict=True)
                    if not act.geo_pending
                ]
            )
            leaves = [item for item, act in zip(leaves, acts, strict=True) if act.seq is None]
        with _pipelined(len(acts)):
            # COPY on PostgreSQL for writer-sized batches (see tracking.storage.copyinsert).
            copyinsert.insert(Activity, acts)
            copyinsert.insert(Finding, findings)
            rollups.apply(acts)
        # The batch's outbox entry (alerts, forwarders) commits with it; signals after commit.
        delivery.batch_written(acts, findings)
        if tracking_settings.SEAL_ON_WRITE and leaves:
            # This process seals what it wrote: its sealer uses these leaves instead of
            # reading the rows back (see sealing._WrittenLeaves).
            sealing.written.add(leaves)
    return sealed


@contextmanager
def _pipelined(rows: int) -> Iterator[None]:
    """On PostgreSQL, send a small batch's INSERTs and rollup upserts together (psycopg's
    pipeline mode): a synchronous request's writes cost one round trip instead of three.
    Not for batches COPY writes (COPY cannot run in a pipeline). Errors surface when the
    pipeline syncs, converted to Django's exceptions as if raised by the statement."""
    conn = transaction.get_connection()
    if conn.vendor != "postgresql" or rows >= copyinsert.MIN_ROWS:
        yield
        return
    conn.ensure_connection()
    raw = conn.connection
    if not hasattr(raw, "pipeline"):  # psycopg2
        yield
        return
    with conn.wrap_database_errors, raw.pipeline():
        yield


def _drop_existing(
    pairs: list[tuple[Event, Activity]], result: IngestResult
) -> list[tuple[Event, Activity]]:
    existing = _existing([a.id for _, a in pairs])
    if not existing:
        return pairs
    result.duplicates += sum(1 for _, a in pairs if a.id in existing)
    return [(e, a) for e, a in pairs if a.id not in existing]


def stored_ids(ids: Sequence[str]) -> set[str]:
    """Which of these event ids the database holds (``tracking.pipeline.confirm``)."""
    return {str(found) for found in _existing([uuid.UUID(i) for i in ids])}


def _existing(ids: list[uuid.UUID]) -> set[uuid.UUID]:
    """The ids of these stored already. On PostgreSQL one statement with the ids as one array
    parameter: a web process's writer asks this for every event it published (the ORM's
    ``IN`` lists of 500 were ~3 % of a saturated web core), and the batch step per batch."""
    if not ids:
        return set()
    conn = connections[router.db_for_read(Activity)]
    cursor = server_bound_cursor(conn)
    if cursor is not None:
        table = conn.ops.quote_name(Activity._meta.db_table)
        column = conn.ops.quote_name(Activity._meta.pk.column)
        with conn.wrap_database_errors, cursor:
            cursor.execute(f"SELECT {column} FROM {table} WHERE {column} = ANY(%b)", [ids])  # noqa: S608
            return {row[0] for row in cursor.fetchall()}
    found: set[uuid.UUID] = set()
    for i in range(0, len(ids), 500):
        found.update(Activity.objects.filter(id__in=ids[i : i + 500]).values_list("id", flat=True))
    return found


_committed: list[Callable[[int], None]] = []
_detected: list[Callable[[list[Finding]], Any]] = []


def after_detection(hook: Callable[[list[Finding]], Any]) -> None:
    """Call ``hook(findings)`` right after each batch's detection, inside its transaction
    (``tracking.respond.actions`` makes the blocks findings request here). A hook handles its
    own failures; one that raises rolls the batch back like a database error."""
    if hook not in _detected:
        _detected.append(hook)


def after_commit(hook: Callable[[int], None]) -> None:
    """Call ``hook(rows)`` after each batch that stored rows has committed (the write path
    registers its sealing policy here: ``tracking.pipeline.housekeeping.rows_committed``)."""
    if hook not in _committed:
        _committed.append(hook)


def _announce_after_commit(rows: int) -> None:
    hooks = list(_committed)
    if not hooks:
        return

    def run() -> None:
        for hook in hooks:
            hook(rows)

    transaction.on_commit(run)


def _reject(result: IngestResult, item: Any, reason: str) -> None:
    result.failed += 1
    result.rejected += 1
    result.errors.append(reason)
    ident = item_id(item)
    if ident:
        result.rejected_ids.append(ident)
    logger.error("tracking event rejected: %s", reason)
    result.dead_letters.append((item, reason))


def ingest(
    events: Iterable[Event | dict],
    *,
    source: str = "live",
    assume_new: bool = False,
    detect: bool = True,
) -> IngestResult:
    """Store a batch of events; see the module docstring. Idempotent on event ids.

    ``assume_new=True`` (live capture: the request path and the writer's queue) skips the
    lookup of already stored ids; a duplicate then costs a failed insert and the lookup.
    ``detect=False`` runs no detector and no rule: profiles still learn from the events, but
    no new verdict is made (restoring exported records with the verdict they carry)."""
    # A request storing its own batch (source "sync") must not queue behind other processes'
    # batches for the chain lock: its rows are sealed after it committed (``after_commit``).
    seal = bool(tracking_settings.SEAL_ON_WRITE) and source not in REQUEST_SOURCES
    # Enrichment, detection and row building allocate many short-lived containers; cyclic
    # collections they would trigger walk the whole heap (see ``gc_paused``).
    with gc_paused():
        return _ingest(
            events, source=source, assume_new=assume_new, learn_only=not detect, seal=seal
        )


def _stored(result: IngestResult, pairs: Pairs) -> None:
    result.stored += len(pairs)
    result.ids.extend(str(a.id) for _, a in pairs)


def _ingest(
    events: Iterable[Event | dict],
    *,
    source: str,
    assume_new: bool,
    learn_only: bool,
    seal: bool,
) -> IngestResult:
    result = IngestResult()
    items = list(events)
    if not items:
        return result
    try:
        seen: set[uuid.UUID] = set()
        pairs: list[tuple[Event, Activity]] = []
        for item in items:
            try:
                event = as_event(item)
                act = build_activity(event)
            except InvalidEvent as exc:
                _reject(result, item.to_dict() if isinstance(item, Event) else item, str(exc))
                continue
            except Exception as exc:  # one odd event never loses the batch
                _reject(
                    result,
                    item.to_dict() if isinstance(item, Event) else item,
                    f"{type(exc).__name__}: {exc}",
                )
                continue
            if act.id in seen:
                result.duplicates += 1
                continue
            seen.add(act.id)
            pairs.append((event, act))
        if not pairs:
            return result
        # Live events carry ids made for them (uuid4) that were never offered before: the
        # lookup is skipped (one query per batch). Should an id exist after all, the insert
        # fails as a whole and the batch takes the idempotent path below.
        if not assume_new:
            pairs = _drop_existing(pairs, result)
        pairs.sort(key=lambda p: p[1].timestamp)
        users = Users([e for e, _ in pairs], trust_ids=assume_new)
        attach_users(pairs, users)
        try:
            result.sealed += _insert(pairs, learn_only=learn_only, seal=seal)
        except Exception as exc:  # isolate the bad event below
            if _unavailable(exc):
                raise
            _after_failed_batch(
                pairs, users, exc, result, assume_new=assume_new, learn_only=learn_only, seal=seal
            )
        else:
            _stored(result, pairs)
        if result.stored > result.sealed:
            _announce_after_commit(result.stored - result.sealed)
    except DatabaseError as exc:
        if not _unavailable(exc):
            raise
        done = set(result.ids) | set(result.rejected_ids)
        pending = [i for i in items if item_id(i) not in done]
        logger.error("database unavailable, %d tracking events not written: %s", len(pending), exc)
        result.unwritten.extend(pending)
        result.unavailable = str(exc)
        result.failed += len(pending)
        _close_connection()
    logger.debug("ingest(%s): %s", source, result)
    return result


def _after_failed_batch(
    pairs: list[tuple[Event, Activity]],
    users: Users,
    exc: Exception,
    result: IngestResult,
    *,
    assume_new: bool,
    learn_only: bool,
    seal: bool,
) -> None:
    """A batch's write failed and nothing of it was stored. A live batch may hold an id that
    was stored already or a trusted user id whose user is gone (both refused by a constraint):
    drop the one, resolve the other against the table and write the batch once more. What
    still fails is written event by event, so one bad event only loses itself."""
    if isinstance(exc, IntegrityError):
        # A live id stored before, or the same event stored meanwhile by another process
        # (the intake's recovery racing a slow writer): a duplicate, not a bad event.
        pairs = _drop_existing(pairs, result)
        if not pairs:
            return
    if users.trusted:
        users = Users([e for e, _ in pairs])
        attach_users(pairs, users)
        if isinstance(exc, IntegrityError):
            try:
                result.sealed += _insert(pairs, learn_only=learn_only, seal=seal)
            except Exception as again:
                if _unavailable(again):
                    raise
                exc = again
            else:
                _stored(result, pairs)
                return
    logger.warning("batch insert failed (%s); retrying events one by one", exc)
    _one_by_one(pairs, result, learn_only=learn_only, seal=seal)


def _one_by_one(
    pairs: list[tuple[Event, Activity]], result: IngestResult, *, learn_only: bool, seal: bool
) -> None:
    for event, act in pairs:
        try:
            result.sealed += _insert([(event, act)], learn_only=learn_only, seal=seal)
        except Exception as exc:
            if _unavailable(exc):
                raise
            _reject(result, event.to_dict(), f"{type(exc).__name__}: {exc}")
            continue
        _stored(result, [(event, act)])


def _close_connection() -> None:
    try:
        if not connection.in_atomic_block:
            connection.close()
    except Exception:
        logger.debug("closing a broken connection failed", exc_info=True)
