"""Hash-chain sealing and the application's deletion path.

CONTRACT (owned by the integrity work):
- ``seal_pending(limit=None) -> int``: seal unsealed activities in order; returns how many.
- ``seal_inserting(rows) -> int``: seal rows the current transaction is about to insert
  (the batch step of the writer thread, Celery workers and imports).
- ``delete_activities(ids, *, reason, by="") -> int``: the application's deletion path:
  writes a signed Tombstone per row, then deletes the rows and their findings.

A seal covers a run of consecutive ``seq`` numbers. Its ``leaves`` list ``"<id>:<leaf hash>"``
per row in seq order, ``digest`` hashes that text, and ``chain_hash`` binds the digest to the
previous seal's chain hash and to the seq range, so removing, editing or reordering either a
row or a seal breaks the chain. ``mac`` authenticates the chain hash with a key that is not in
the database (``TRACKING_SEAL_KEYS``); ``tracking verify`` (``tracking.integrity.verify``) re-computes it all.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any

from django.db import DatabaseError, connection, router, transaction
from django.utils import timezone

from tracking.binding import server_bound_cursor
from tracking.conf import tracking_settings
from tracking.integrity import macs as integrity
from tracking.integrity.anchor import behind_head_cutoff
from tracking.integrity.crypto import DecryptionError
from tracking.models import Activity, Checkpoint, Finding, Seal, Tombstone

UTC = dt_timezone.utc

logger = logging.getLogger("tracking.sealing")

# prev_hash of the first seal.
GENESIS = "0" * 64
# pg_advisory_xact_lock key shared by every writer of the chain ("trak" in ASCII).
ADVISORY_LOCK_KEY = 0x7472616B
# Session variable the PostgreSQL trigger (``tracking postgres install-trigger``) checks.
ALLOW_DELETE_GUC = "tracking.allow_delete"


# --- signed messages (verify recomputes exactly these) ----------------------------------


def _ts(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def leaves_digest(leaves: str) -> str:
    return hashlib.sha256(leaves.encode()).hexdigest()


def chain_hash(prev_hash: str, digest: str, first_seq: int, last_seq: int, count: int) -> str:
    return hashlib.sha256(
        f"{prev_hash}|{digest}|{first_seq}|{last_seq}|{count}".encode()
    ).hexdigest()


def seal_message(seal: Seal) -> bytes:
    return f"{seal.chain_hash}|{_ts(seal.created_at)}".encode()


def tombstone_message(t: Tombstone) -> bytes:
    return (
        f"{t.activity_id}|{'' if t.seq is None else t.seq}|{t.leaf}|{_ts(t.activity_timestamp)}|"
        f"{_ts(t.deleted_at)}|{t.deleted_by}|{t.reason}"
    ).encode()


def checkpoint_message(c: Checkpoint) -> bytes:
    return (
        f"{c.through_seq}|{_ts(c.before)}|{c.removed}|{_ts(c.created_at)}|{c.created_by}|{c.reason}"
    ).encode()


def _signed(obj: Any, message: bytes, purpose: str) -> None:
    signature = integrity.sign(message, purpose)
    obj.key_id = signature.partition(":")[0]
    obj.mac = signature


def _now() -> datetime:
    # Microsecond precision survives every backend, so a signed timestamp re-reads equal.
    return timezone.now().astimezone(UTC)


# --- locking ------------------------------------------------------------------------------


def lock_chain(*, wait: bool = True) -> bool:
    """Serialise writers of the chain (sealer, deletion, purge) for the current transaction.

    PostgreSQL: a transaction-scoped advisory lock, so web requests (which never take it) are
    not blocked; with ``wait=False`` it is only tried and False means another sealer holds it.
    SQLite: a write statement takes the database's RESERVED lock at once (needed when the
    project did not configure ``transaction_mode=IMMEDIATE``); SQLite writers queue anyway.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            if not wait:
                cur.execute("SELECT pg_try_advisory_xact_lock(%s)", [ADVISORY_LOCK_KEY])
                return bool(cur.fetchone()[0])
            cur.execute("SELECT pg_advisory_xact_lock(%s)", [ADVISORY_LOCK_KEY])
        return True
    Seal.objects.filter(pk=-1).update(count=0)
    return True


def allow_delete() -> None:
    """Tell the optional PostgreSQL trigger that this transaction is the app's deletion path."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute("SELECT set_config(%s, 'on', true)", [ALLOW_DELETE_GUC])


# --- sealing --------------------------------------------------------------------------------


def _row_leaf(activity: Activity) -> str | None:
    """The row's leaf hash when its MAC verifies, else None (never sealed)."""
    try:
        leaf, valid = integrity.row_state(activity)
    except DecryptionError:
        return None
    return leaf if valid else None


class _WrittenLeaves:
    """Leaf hashes of the rows this process has just written, by id, with the MAC each was
    written with, until they are sealed.

    Reading a new row back in full, decrypting its headers and params and re-hashing it costs
    more CPU than writing it: a row this process wrote and whose stored MAC is still the one
    it wrote is sealed with the leaf computed at write time instead. The seal lists what the
    application wrote, so content altered in the table before sealing does not match its
    sealed leaf and ``tracking verify`` reports it. A row whose MAC changed (re-enrichment),
    or written by another process, is read in full.
    Bounded (~7 MB at the default ``limit``): beyond it the oldest entries are dropped and
    those rows are read back. Only filled where the writing process seals
    (``TRACKING_SEAL_ON_WRITE``).
    """

    def __init__(self, limit: int = 20_000) -> None:
        self.limit = limit
        self.lock = threading.Lock()
        self.leaves: OrderedDict[uuid.UUID, tuple[str, str]] = OrderedDict()

    def add(self, items: Iterable[tuple[uuid.UUID, str, str]]) -> None:
        with self.lock:
            leaves = self.leaves
            for ident, mac, leaf in items:
                leaves[ident] = (mac, leaf)
            while len(leaves) > self.limit:
                leaves.popitem(last=False)

    def take(self, heads: list[tuple[uuid.UUID, Any, str]]) -> dict[uuid.UUID, str]:
        """Leaves of the rows in ``heads`` (id, timestamp, stored MAC) whose MAC matches."""
        out = {}
        with self.lock:
            for ident, _, mac in heads:
                known = self.leaves.get(ident)
                if known is not None and known[0] == mac:
                    out[ident] = known[1]
        return out

    def forget(self, ids: Iterable[uuid.UUID]) -> None:
        with self.lock:
            for ident in ids:
                self.leaves.pop(ident, None)

    def clear(self) -> None:
        with self.lock:
            self.leaves.clear()


written = _WrittenLeaves()

# Rows read back per query when their leaves are not known (SQLite's parameter limit).
READ_CHUNK = 900


def _set_seq(rows: list[tuple[uuid.UUID, datetime, int]]) -> None:
    """Store each row's new ``seq`` with one statement (PostgreSQL) or one prepared statement
    run per row. ``bulk_update`` built a ``CASE WHEN`` expression per row through the ORM: it
    was two thirds of sealing's CPU, more than writing the rows in the first place."""
    meta = Activity._meta
    conn = transaction.get_connection(router.db_for_write(Activity))
    q = conn.ops.quote_name
    table, seq, ident, ts = (
        q(meta.db_table),
        # get_field() is typed as possibly a relation; these names are concrete columns.
        q(meta.get_field("seq").column),  # type: ignore[union-attr]
        q(meta.pk.column),
        q(meta.get_field("timestamp").column),  # type: ignore[union-attr]
    )
    bound = server_bound_cursor(conn)
    with bound or conn.cursor() as cur, conn.wrap_database_errors:
        if conn.vendor == "postgresql":
            # Joining on (id, timestamp), the partitioned table's primary key, finds each row
            # by index in its partition. Only quoted model identifiers are interpolated. The
            # arrays go as parameters where possible: quoted into the text by Django's
            # client-side binding, they cost more than the update; binary (%b) where bound.
            p = "%b" if bound is not None else "%s"
            cur.execute(
                f"UPDATE {table} AS a SET {seq} = v.seq "  # noqa: S608
                f"FROM unnest({p}::uuid[], {p}::timestamptz[], {p}::bigint[]) AS v(id, ts, seq) "
                f"WHERE a.{ident} = v.id AND a.{ts} = v.ts",
                [[r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]],
            )
        else:
            pk = meta.pk
            cur.executemany(
                f"UPDATE {table} SET {seq} = %s WHERE {ident} = %s",  # noqa: S608
                [(n, pk.get_db_prep_value(i, conn)) for i, _, n in rows],
            )
        updated = cur.rowcount
    if updated != len(rows):
        # A row went away between reading and numbering it: seal nothing of this chunk
        # (the transaction rolls back) rather than list a row the table no longer holds.
        raise DatabaseError(f"sealing numbered {updated} of {len(rows)} rows; retried later")


def _read_leaves(ids: list[uuid.UUID], skip: set) -> dict[uuid.UUID, str]:
    """Leaves of rows read back in full; rows whose MAC does not verify are left out."""
    out: dict[uuid.UUID, str] = {}
    for i in range(0, len(ids), READ_CHUNK):
        for row in Activity.objects.filter(id__in=ids[i : i + READ_CHUNK]):
            leaf = _row_leaf(row)
            if leaf is None:
                # Written behind the application's back (or altered before sealing): sealing
                # it would launder it. It stays unsealed and `tracking verify` reports it.
                skip.add(row.id)
                logger.warning("activity %s has an invalid row MAC; not sealed", row.id)
                continue
            out[row.id] = leaf
    return out


def _warn_behind_head(heads: list[tuple[uuid.UUID, Any, str]], last: Seal | None) -> None:
    """Rows recorded well before the newest seal was made should have been in it: either a
    late import, or their seal was removed and their seq stripped (a cut chain tail)."""
    cutoff = behind_head_cutoff(last)
    late = [ident for ident, ts, _ in heads if cutoff is not None and ts < cutoff]
    if late and last is not None:
        logger.warning(
            "sealing %d activities recorded more than %s s before the chain head (seal %s, "
            "seq %s) was made, e.g. %s: a late import, or their seal was removed; check with "
            "`tracking verify --anchor`",
            len(late),
            tracking_settings.UNSEALED_BEHIND_HEAD_GRACE,
            last.pk,
            last.last_seq,
            late[0],
        )


def _seal_chunk(
    size: int, skip: set, geo_grace: float | None, wait: bool, others_grace: float | None = None
) -> tuple[int, int] | None:
    """Seal up to ``size`` rows in one short transaction: (sealed, refused), or None when
    another sealer holds the chain (``wait=False``). ``others_grace``: see ``seal_pending``."""
    with transaction.atomic():
        if not lock_chain(wait=wait):
            return None
        last = chain_head()
        prev, next_seq = _link_after(last)
        qs = Activity.objects.filter(seq__isnull=True).order_by("timestamp", "id")
        if skip:
            qs = qs.exclude(id__in=skip)
        if geo_grace is not None:
            # Rows still waiting for geolocation are enriched (and re-MACed) later; give them
            # a grace period so the enrichment does not have to touch sealed content.
            cutoff = timezone.now() - timedelta(seconds=geo_grace)
            qs = qs.exclude(geo_pending=True, timestamp__gt=cutoff)
        heads = list(qs.values_list("id", "timestamp", "mac")[:size])
        if not heads:
            return 0, 0
        _warn_behind_head(heads, last)
        leaves = written.take(heads)
        if others_grace is not None:
            left_from = timezone.now() - timedelta(seconds=others_grace)
            heads = [h for h in heads if h[0] in leaves or h[1] < left_from]
            if not heads:
                return 0, 0
        unknown = [h[0] for h in heads if h[0] not in leaves]
        if unknown:
            leaves.update(_read_leaves(unknown, skip))
        good = [(ident, ts, leaves[ident]) for ident, ts, _ in heads if ident in leaves]
        refused = len(heads) - len(good)
        if not good:
            return 0, refused
        _set_seq([(ident, ts, next_seq + k) for k, (ident, ts, _) in enumerate(good)])
        seal = _new_seal(prev, next_seq, [(ident, leaf) for ident, _, leaf in good])
    written.forget(ident for ident, _, _ in good)
    _log_seal(seal)
    return seal.count, refused


def _link_after(last: Seal | None) -> tuple[str, int]:
    """(previous chain hash, first seq) of the seal that follows ``last``."""
    return (last.chain_hash, last.last_seq + 1) if last else (GENESIS, 1)


def _new_seal(prev: str, first: int, leaves: list[tuple[Any, str]]) -> Seal:
    """Sign and save the seal of ``leaves`` ((id, leaf) in seq order from ``first``), linked
    to the chain hash ``prev``; the caller holds the chain lock."""
    leaves_text = "\n".join(f"{ident}:{leaf}" for ident, leaf in leaves)
    count = len(leaves)
    digest = leaves_digest(leaves_text)
    seal = Seal(
        first_seq=first,
        last_seq=first + count - 1,
        count=count,
        created_at=_now(),
        leaves=leaves_text,
        digest=digest,
        prev_hash=prev,
        chain_hash=chain_hash(prev, digest, first, first + count - 1, count),
    )
    _signed(seal, seal_message(seal), "seal")
    seal.save()
    return seal


def _log_seal(seal: Seal) -> None:
    # Shipped with the rest of the logs (syslog/SIEM), these lines are anchors outside the
    # database: `tracking verify --anchor <hash>` proves the chain was not cut after them.
    logger.info(
        "sealed seq %d..%d (%d rows); chain head %s",
        seal.first_seq,
        seal.last_seq,
        seal.count,
        seal.chain_hash,
    )


def seal_inserting(rows: list[tuple[Activity, str]]) -> int:
    """Seal rows the current transaction is about to insert: take the chain lock (waiting
    for it), number ``rows`` ((activity, leaf hash computed when its MAC was made), in
    (timestamp, id) order) after the chain head by setting each one's ``seq`` before its
    INSERT, and save their seal. Returns how many were sealed.

    A row sealed as it is inserted is never written without its place in the chain: no
    unsealed window to alter it in, and no second write of every row and its index entries
    to number it afterwards (an ``UPDATE`` of the indexed ``seq`` column, about half of the
    WAL a synchronous request made). The lock is held until the batch commits, so batch
    steps of several processes write one after another; detection runs before the lock.
    """
    if not rows:
        return 0
    lock_chain(wait=True)
    prev, first = _link_after(chain_head())
    ordered = sorted(rows, key=lambda r: (r[0].timestamp, str(r[0].id)))
    for k, (act, _) in enumerate(ordered):
        act.seq = first + k
    seal = _new_seal(prev, first, [(act.id, leaf) for act, leaf in ordered])
    transaction.on_commit(lambda: _log_seal(seal))
    return seal.count


def seal_pending(
    limit: int | None = None,
    *,
    include_geo_pending: bool = False,
    wait: bool = False,
    others_grace: float | None = None,
) -> int:
    """Seal unsealed activities in (timestamp, id) order, in chunks; returns how many.

    Each chunk is its own short transaction holding the chain lock. By default the lock is
    only *tried* (PostgreSQL): when another process is sealing, this call returns at once and
    that sealer (or the next write, ``tracking seal`` or the periodic task) seals these rows —
    so the writer's seal-after-commit never makes requests queue behind each other. Operator
    paths (``tracking seal``, purge, the periodic task) pass ``wait=True``. Rows whose MAC does
    not verify are left unsealed (and logged); ``tracking verify`` reports them.

    ``others_grace`` (a writer's own sealing): rows whose leaves this process does not hold
    (``written``: another process wrote them) are left to their writer for this many
    seconds after their timestamp, then sealed here too (that writer died or is far behind).
    Reading a row back to verify and hash it costs more CPU than writing it; with every
    process sealing all it found, about half of each one's seals were other processes' rows.
    """
    batch = max(1, int(tracking_settings.SEAL_BATCH_SIZE or 5000))
    grace = None if include_geo_pending else tracking_settings.SEAL_GEO_PENDING_GRACE
    skip: set = set()
    total = 0
    while limit is None or total < limit:
        size = batch if limit is None else min(batch, limit - total)
        outcome = _seal_chunk(size, skip, grace, wait, others_grace)
        if outcome is None:
            break
        sealed, refused = outcome
        total += sealed
        if sealed + refused < size:
            # The backlog is done. Rows committed meanwhile wait for the next round: chasing
            # them sealed a steady stream of synchronous writes one row per transaction.
            break
    return total


def chain_head() -> Seal | None:
    return Seal.objects.order_by("-last_seq").first()


# --- deletion -------------------------------------------------------------------------------


def _tombstone(row: Activity, reason: str, by: str, deleted_at: datetime) -> Tombstone:
    try:
        leaf = integrity.leaf_hash(row)
    except DecryptionError:
        leaf = ""  # verify then reports the row as changed before its deletion
    t = Tombstone(
        activity_id=row.id,
        seq=row.seq,
        leaf=leaf,
        activity_timestamp=row.timestamp.astimezone(UTC) if row.timestamp else None,
        deleted_at=deleted_at,
        deleted_by=(by or "")[:150],
        reason=(reason or "")[:32],
    )
    _signed(t, tombstone_message(t), "tombstone")
    return t


def delete_activities(ids: Iterable, *, reason: str, by: str = "") -> int:
    """Delete activities through the application: a signed Tombstone per row, then the rows
    and their findings, in one transaction. Returns how many rows were deleted.

    A tombstone records the row's leaf hash as it was, so ``tracking verify`` can tell this
    deletion (expected) from one done behind the application's back.
    """
    ids = list(ids)
    if not ids:
        return 0
    with transaction.atomic():
        lock_chain()
        allow_delete()
        rows = list(Activity.objects.filter(id__in=ids))
        if not rows:
            return 0
        now = _now()
        row_ids = [r.id for r in rows]
        # A stale tombstone (e.g. the row was deleted and re-inserted) is replaced.
        Tombstone.objects.filter(activity_id__in=row_ids).delete()
        Tombstone.objects.bulk_create([_tombstone(r, reason, by, now) for r in rows])
        Finding.objects.filter(activity_id__in=row_ids).delete()
        deleted = Activity.objects.filter(id__in=row_ids).delete()[1].get(Activity._meta.label, 0)
    return deleted


def write_checkpoint(
    through_seq: int, before: datetime, removed: int, *, by: str = ""
) -> Checkpoint:
    """A signed statement that rows of seals up to ``through_seq`` are gone by retention."""
    c = Checkpoint(
        through_seq=through_seq,
        before=before.astimezone(UTC),
        removed=removed,
        created_at=_now(),
        created_by=(by or "")[:150],
        reason="purge",
    )
    _signed(c, checkpoint_message(c), "checkpoint")
    c.save()
    return c
