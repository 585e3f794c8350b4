"""The synchronous path's durable hand-off: a request's event committed before its response,
stored as an ``Activity`` with its verdict by the batch step right after.

A synchronous ``@track`` request (one whose type is not in ``TRACKING_VERDICT_BEFORE_RESPONSE``
and that runs outside a transaction) must be committed when its response leaves, but
enrichment, detection, rollups and sealing need not hold the response. So the request does
one INSERT of its event, encrypted as a spool line, into the narrow ``Intake`` table
(``store``; autocommit, no lock another request waits for, one index to maintain), and this
process's writer passes the events to ``judge`` within ``TRACKING_FLUSH_INTERVAL``: the one
batch step every activity goes through (``ingest``), then the intake rows are deleted. The
activity row is written once, with its verdict: no stored row is rewritten to add it.

How durable the commit is: the row is committed before the response either way, so a killed
worker or a crash of the application loses nothing acknowledged. By default the INSERT's own
transaction does not wait for PostgreSQL to flush its WAL to disk (``synchronous_commit`` off
for that one statement, ``set_config(..., true)``): the flush wait was the largest share of a
synchronous request's time, and PostgreSQL's WAL writer flushes it within
``3 x wal_writer_delay`` (0.6 s by default), so only a crash of PostgreSQL or of its machine
in that window can lose it.
``TRACKING_DURABLE_HANDOFF = True`` waits for the flush, as it waits for the journal's
``fdatasync`` on the async path. Activity types in ``TRACKING_VERDICT_BEFORE_RESPONSE``
(logins by default) never take the intake: they are stored in full with an ordinary commit.

With the Celery hand-off the writer publishes the events instead
(``housekeeping.Judging``) and the worker's ``ingest_events`` task runs the batch step and
deletes the rows (``release``), so the web tier does not run it.

Crash safety: the intake row is deleted only after the batch that stored its activity
committed. A process that dies between the two leaves intake rows behind; ``recover`` (the
writers' scan every ``SCAN_INTERVAL`` seconds and at start, ``tracking flush``) stores those
older than ``GRACE`` seconds, and at once those whose owner (host, pid and start time of the
process that committed them) is a process of this host that no longer runs: a worker
restarted after a crash stores what its predecessor left when its writer starts. ``ingest``
skips ids already stored, so an event stored twice (a recovery racing a slow writer) keeps
one row, one verdict and one outbox entry.

The payload is decrypted only with ``TRACKING_ENCRYPTION_KEYS`` (AES-GCM: an altered row is
refused, never parsed); a row that cannot be read is kept as a dead letter with its reason.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

from django.db import connections, router
from django.utils import timezone

from tracking.binding import reusable_cursor, server_bound_cursor
from tracking.conf import tracking_settings
from tracking.events import Event
from tracking.integrity import crypto
from tracking.models import Intake
from tracking.pipeline import spool
from tracking.pipeline.ingest import IngestResult, ingest
from tracking.pipeline.rows import item_id

logger = logging.getLogger("tracking.recording")

# Seconds an intake row may wait before another process's recovery scan stores it: its own
# writer stores it within TRACKING_FLUSH_INTERVAL unless the process died or is far behind.
GRACE = 10.0
SCAN_INTERVAL = 30.0  # seconds between a writer's recovery scans (and one at start)
BATCH = 500  # events per batch step


class Unusable(Exception):
    """The event cannot go through the intake (no encryption key): store it in full now."""


def accepts(event: Event) -> bool:
    """Only events whose id is a UUID fit the intake's key (live capture makes uuid4 ids);
    others take the full synchronous path, where ``ingest`` explains a bad id."""
    try:
        uuid.UUID(str(event.id))
    except (TypeError, ValueError, AttributeError):
        return False
    return True


def _payload(event: Event) -> str:
    try:
        return spool.encode(event).decode("ascii").rstrip("\n")
    except spool.SpoolError as exc:  # no encryption key: nothing is written in clear
        raise Unusable(str(exc)) from exc


def store(events: Sequence[Event]) -> None:
    """Commit ``events`` to the intake: one INSERT (``executemany`` for several) in
    autocommit. Raises ``Unusable`` before writing anything when the events cannot be
    encrypted, and the database's errors as they are."""
    payloads = [_payload(e) for e in events]
    if not payloads:
        return
    conn = connections[router.db_for_write(Intake)]
    owner = me()
    # Server-side binding: Django's client-side binding quoted the payload into the
    # statement, which cost more CPU than the rest of the request's write. The cursor is
    # kept for the connection (this runs in every synchronous request).
    cursor = reusable_cursor(conn)
    # Never inside a caller's transaction (the setting would last until its commit), and
    # only with typed, server-bound parameters (INSERT ... SELECT takes its column types
    # from them, not from the table).
    flush = bool(tracking_settings.DURABLE_HANDOFF) or conn.in_atomic_block or cursor is None
    sql, key, created_field = _insert_statement(conn.vendor, conn, wait_for_flush=flush)
    if cursor is not None:
        # psycopg adapts UUIDs and aware datetimes itself.
        created = timezone.now()
        rows = [
            [uuid.UUID(str(e.id)), created, payload, owner]
            for e, payload in zip(events, payloads, strict=True)
        ]
        with conn.wrap_database_errors:
            cursor.executemany(sql, rows) if len(rows) > 1 else cursor.execute(sql, rows[0])
        return
    created = created_field.get_db_prep_save(timezone.now(), conn)
    rows = [
        [key(uuid.UUID(str(e.id)), conn), created, payload, owner]
        for e, payload in zip(events, payloads, strict=True)
    ]
    with conn.cursor() as cursor:
        cursor.executemany(sql, rows) if len(rows) > 1 else cursor.execute(sql, rows[0])


_statements: dict[tuple[str, bool], tuple] = {}


def _insert_statement(vendor: str, conn, *, wait_for_flush: bool = True) -> tuple:
    """(INSERT statement, id preparation, created field) per backend and durability, built
    once: this runs in every synchronous request. On PostgreSQL without ``wait_for_flush``
    the statement turns ``synchronous_commit`` off for its own transaction only (run in
    autocommit, it is one); other backends always take the plain INSERT."""
    wait_for_flush = wait_for_flush or vendor != "postgresql"
    found = _statements.get((vendor, wait_for_flush))
    if found is None:
        meta = Intake._meta
        q = conn.ops.quote_name
        names = (q(meta.db_table), q("id"), q("created"), q("payload"), q("owner"))
        # Only the model's quoted table and column names are formatted in; values are
        # parameters.
        if wait_for_flush:
            sql = "INSERT INTO {} ({}, {}, {}, {}) VALUES (%s, %s, %s, %s)".format(*names)  # noqa: S608
        else:
            template = (
                "WITH no_flush_wait AS (SELECT set_config('synchronous_commit', 'off', true)) "
                "INSERT INTO {} ({}, {}, {}, {}) SELECT %s, %s, %s, %s FROM no_flush_wait"
            )
            sql = template.format(*names)
        pk = meta.pk
        # PostgreSQL's uuid column takes a UUID as it is; elsewhere Django's preparation.
        key = (lambda v, c: v) if vendor == "postgresql" else pk.get_db_prep_save
        found = (sql, key, meta.get_field("created"))
        _statements[(vendor, wait_for_flush)] = found
    return found


def remove(ids: Iterable[Any]) -> None:
    keys = [uuid.UUID(str(i)) for i in ids]
    if not keys:
        return
    conn = connections[router.db_for_write(Intake)]
    cursor = server_bound_cursor(conn)
    if cursor is not None:
        # One statement with the ids as one array parameter: the ORM's delete quoted each id
        # into the statement text (a tenth of the writer thread's CPU under load).
        table = conn.ops.quote_name(Intake._meta.db_table)
        with conn.wrap_database_errors, cursor:
            key = conn.ops.quote_name(Intake._meta.pk.column)
            cursor.execute(f"DELETE FROM {table} WHERE {key} = ANY(%b)", [keys])  # noqa: S608
        return
    for i in range(0, len(keys), BATCH):
        Intake.objects.filter(id__in=keys[i : i + BATCH]).delete()


def judge(events: Sequence[Event | dict], *, fresh: bool = False) -> IngestResult:
    """The batch step for intake events, then their intake rows removed. Events the database
    did not take (it is unavailable) keep their intake rows for the recovery scan; rejected
    ones go to the dead-letter file. ``fresh``: events this process built and handed over
    (``ingest``'s ``assume_new``: no lookup of stored ids; should a recovery have stored one
    meanwhile, the failed insert takes the lookup); recovered events are looked up."""
    result = ingest(events, source="intake", assume_new=fresh)
    spool.keep_dead_letters(result.dead_letters)
    release(events, result)
    return result


def release(events: Iterable[Event | dict], result: IngestResult) -> None:
    """Remove the intake rows of ``events`` once their batch step (``result``) is over: all
    but those the database did not take (``result.unwritten``), whose rows stay for the
    recovery scan. Rejected events are in the dead-letter file by then."""
    left = {item_id(e) for e in result.unwritten}
    remove(i for i in (item_id(e) for e in events) if i is not None and i not in left)


_HOST = socket.gethostname()[:60]
_identity: dict[int, str] = {}


def _started(pid: int) -> str:
    """The process's start time in clock ticks since boot (/proc), "" where unknown: with
    the pid it names one process, even after the pid is reused."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def me() -> str:
    """This process as an intake row's owner: ``<host>:<pid>:<start>``."""
    pid = os.getpid()
    found = _identity.get(pid)
    if found is None:
        found = _identity[pid] = f"{_HOST}:{pid}:{_started(pid)}"
    return found


def _gone(owner: str) -> bool:
    """Whether ``owner`` is a process of this host that no longer runs."""
    parts = owner.rsplit(":", 2)
    if len(parts) != 3 or parts[0] != _HOST or not parts[1].isdigit():
        return False
    pid, started = int(parts[1]), parts[2]
    if pid == os.getpid():
        return owner != me()
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, another user's
    return bool(started) and _started(pid) != started


def due(*, older_than: float | None = GRACE, limit: int = BATCH) -> list[tuple[uuid.UUID, str]]:
    """(id, payload) of intake rows older than ``older_than`` seconds, and of rows a gone
    process of this host left (any age), oldest first."""
    rows = Intake.objects.order_by("created", "id")
    if not older_than:
        return list(rows.values_list("id", "payload")[:limit])
    cutoff = timezone.now() - timedelta(seconds=older_than)
    old = list(rows.filter(created__lt=cutoff).values_list("id", "payload")[:limit])
    young = rows.filter(created__gte=cutoff, owner__startswith=f"{_HOST}:").exclude(owner=me())
    owners = {o: _gone(o) for o in young.order_by().values_list("owner", flat=True).distinct()}
    orphans = [o for o, gone in owners.items() if gone]
    if orphans and len(old) < limit:
        left = young.filter(owner__in=orphans).values_list("id", "payload")[: limit - len(old)]
        old.extend(left)
    return old


def recover(*, older_than: float | None = GRACE) -> int:
    """Store the events left in the intake (see the module docstring); returns how many
    activities this call stored. Stops when a batch makes no progress."""
    total = 0
    while True:
        rows = due(older_than=older_than)
        if not rows:
            return total
        events: list[dict] = []
        unreadable: list[tuple[Any, str]] = []
        for ident, payload in rows:
            try:
                if not payload.startswith(crypto.PREFIX + ":"):
                    # decode_line also reads the plain JSON of old spools: never here, where
                    # anyone who can write to the table could forge an event.
                    raise ValueError("the payload is not encrypted")
                data = spool.decode_line(payload.encode("ascii", "replace"))
                if not isinstance(data, dict) or item_id(data) != str(ident):
                    raise ValueError("the payload is not this row's event")
                events.append(data)
            except ValueError as exc:
                unreadable.append(({"id": str(ident), "payload": payload}, f"intake: {exc}"))
        if unreadable:
            logger.error("%d intake rows cannot be read; kept as dead letters", len(unreadable))
            spool.keep_dead_letters(unreadable)
            remove(d["id"] for d, _ in unreadable)
        result = judge(events) if events else IngestResult()
        total += result.stored
        if result.unwritten or len(rows) < BATCH:
            return total
