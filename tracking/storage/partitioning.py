"""Monthly time partitions of ``tracking_activity`` on PostgreSQL.

Why: retention should drop whole months instead of deleting millions of rows one by one (no
bloat, no long locks, no vacuum debt), and queries by date should only touch the months they
ask for (partition pruning). SQLite keeps the plain table; every function here is a no-op on
other backends or when the table is not partitioned.

Layout (PostgreSQL): ``tracking_activity`` is ``PARTITION BY RANGE ("timestamp")`` with
partitions ``tracking_activity_pYYYY_MM`` covering ``[month start, next month start)`` in UTC
and a ``tracking_activity_default`` partition that catches anything outside them (imports of
old data, clocks far in the future). The primary key becomes ``(id, timestamp)`` in SQL because
PostgreSQL requires the partition key in every unique constraint; Django keeps ``id`` as the
model's primary key, which is safe because nothing references activities with a database FK
and the writer drops ids that are already stored.

Public API (used by the writer, the periodic task, ``tracking purge`` and the CLI):

- ``ensure_partitions(months_ahead=None) -> list[str]``
- ``partitions_before(cutoff) -> list[Partition]`` (plan only)
- ``drop_partitions_before(cutoff) -> DropResult``
- ``list_partitions() -> list[Partition]``, ``is_partitioned() -> bool``
- ``partition_table(connection)`` / ``unpartition_table(connection)`` (the migration)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from datetime import timezone as dt_timezone

from django.db import DEFAULT_DB_ALIAS, connections, transaction

from tracking.conf import on_reload, tracking_settings
from tracking.integrity.sealing import ALLOW_DELETE_GUC

UTC = dt_timezone.utc

TABLE = "tracking_activity"
DEFAULT_PARTITION = f"{TABLE}_default"
LEGACY_TABLE = f"{TABLE}_unpartitioned"
# Serialises partition DDL across processes (writers, workers, cron) on one database.
_LOCK_KEY = 0x7472_6B70  # "trkp"
_NAME_RE = re.compile(r"^tracking_activity_p(\d{4})_(\d{2})$")


@dataclass(frozen=True)
class Partition:
    name: str
    start: datetime | None  # None for the default partition
    end: datetime | None
    rows: int | None = None  # filled by partitions_before (exact count)
    max_seq: int | None = None
    unsealed: int | None = None

    @property
    def is_default(self) -> bool:
        return self.start is None


@dataclass
class DropResult:
    partitions: list[str] = field(default_factory=list)
    rows: int = 0
    findings: int = 0
    # Every activity with timestamp < ``until`` is gone (the newest dropped upper bound).
    until: datetime | None = None
    max_seq: int | None = None


# Months (per alias) this process has already ensured; avoids DDL round trips per batch.
_ensured: dict[str, tuple[int, int]] = {}


def _clear_cache() -> None:
    _ensured.clear()


on_reload(_clear_cache)


def month_start(value: datetime) -> datetime:
    value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return value.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def add_months(value: datetime, months: int) -> datetime:
    index = value.year * 12 + (value.month - 1) + months
    return value.replace(year=index // 12, month=index % 12 + 1, day=1)


def partition_name(start: datetime) -> str:
    return f"{TABLE}_p{start.year:04d}_{start.month:02d}"


def _q(name: str) -> str:
    # Identifiers in this module's SQL are our own constants or names read back from the
    # catalog, always quoted here; values go as parameters (hence the S608 noqas), except
    # partition bounds, which DDL cannot take as parameters (see _bound).
    return '"' + name.replace('"', '""') + '"'


def _bound(start: datetime, end: datetime) -> str:
    """``FROM (…) TO (…)`` of a partition, with the bounds written as literals: utility
    statements (CREATE/ATTACH PARTITION) take no parameters when Django binds them
    server-side (``OPTIONS["server_side_binding"]``). Only our own aware datetimes get here,
    and their ISO form holds digits and ``-:T+.`` alone."""
    for value in (start, end):
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise ValueError("partition bounds must be timezone-aware datetimes")
    return f"FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"


def _supported(using: str) -> bool:
    return connections[using].vendor == "postgresql"


def is_partitioned(using: str = DEFAULT_DB_ALIAS) -> bool:
    """True when ``tracking_activity`` is a partitioned table on this database."""
    if not _supported(using):
        return False
    with connections[using].cursor() as cur:
        cur.execute(
            "SELECT 1 FROM pg_partitioned_table pt JOIN pg_class c ON c.oid = pt.partrelid "
            "WHERE c.relname = %s AND pg_catalog.pg_table_is_visible(c.oid)",
            [TABLE],
        )
        return cur.fetchone() is not None


def list_partitions(using: str = DEFAULT_DB_ALIAS) -> list[Partition]:
    """The partitions of ``tracking_activity``, monthly ones by start, the default last."""
    if not is_partitioned(using):
        return []
    with connections[using].cursor() as cur:
        cur.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent "
            "WHERE p.relname = %s AND pg_catalog.pg_table_is_visible(p.oid)",
            [TABLE],
        )
        names = [row[0] for row in cur.fetchall()]
    monthly, other = [], []
    for name in names:
        m = _NAME_RE.match(name)
        if m:
            start = datetime(int(m.group(1)), int(m.group(2)), 1, tzinfo=UTC)
            monthly.append(Partition(name, start, add_months(start, 1)))
        else:
            other.append(Partition(name, None, None))
    monthly.sort(key=lambda p: p.name)  # pYYYY_MM: name order is start order
    return monthly + other


def _lock(cur) -> None:
    cur.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_KEY])


def _allow_delete(cur) -> None:
    """Moving rows between partitions and retention are the app's own deletion paths: tell
    the optional no-delete trigger (``tracking postgres install-trigger``) for this transaction."""
    cur.execute("SELECT set_config(%s, 'on', true)", [ALLOW_DELETE_GUC])


def _create_month(cur, start: datetime, *, has_default: bool) -> str:
    """Create the partition for the month at ``start``; rows of that month waiting in the
    default partition are moved into it first (attaching would fail otherwise)."""
    name = partition_name(start)
    end = add_months(start, 1)
    if not has_default:
        cur.execute(
            f"CREATE TABLE {_q(name)} PARTITION OF {_q(TABLE)} FOR VALUES {_bound(start, end)}"
        )
        return name
    # Writers must not route rows of this month into the default partition between the move
    # and the attach (the attach would fail); readers are not blocked.
    cur.execute(f"LOCK TABLE {_q(DEFAULT_PARTITION)} IN EXCLUSIVE MODE")
    _allow_delete(cur)
    cur.execute(
        f"CREATE TABLE {_q(name)} (LIKE {_q(TABLE)} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
    )
    cur.execute(
        f"WITH moved AS (DELETE FROM {_q(DEFAULT_PARTITION)} "  # noqa: S608
        f'WHERE "timestamp" >= %s AND "timestamp" < %s RETURNING *) '
        f"INSERT INTO {_q(name)} SELECT * FROM moved",
        [start, end],
    )
    cur.execute(
        f"ALTER TABLE {_q(TABLE)} ATTACH PARTITION {_q(name)} FOR VALUES {_bound(start, end)}"
    )
    return name


def ensure_partitions(
    months_ahead: int | None = None,
    *,
    now: datetime | None = None,
    using: str = DEFAULT_DB_ALIAS,
    refresh: bool = False,
) -> list[str]:
    """Create the monthly partitions from the current month to ``months_ahead`` months ahead,
    plus one for every month that has rows waiting in the default partition. Idempotent and
    safe to call concurrently (advisory lock). A process remembers the month it last ensured,
    so the writer may call it per batch for free; ``refresh=True`` always checks the database.
    Returns the names of the partitions created."""
    if months_ahead is None:
        months_ahead = int(tracking_settings.PARTITION_MONTHS_AHEAD)
    if months_ahead < 0:
        raise ValueError("months_ahead must be >= 0")
    current = month_start(now or datetime.now(UTC))
    marker = (current.year * 12 + current.month, months_ahead)
    if now is None and not refresh and _ensured.get(using) == marker:
        return []
    if not is_partitioned(using):
        return []
    created: list[str] = []
    with transaction.atomic(using=using), connections[using].cursor() as cur:
        _lock(cur)
        existing = list_partitions(using)
        have = {p.start for p in existing if not p.is_default}
        has_default = any(p.name == DEFAULT_PARTITION for p in existing)
        wanted = {add_months(current, i) for i in range(months_ahead + 1)}
        if has_default:
            cur.execute(
                f"SELECT DISTINCT date_trunc('month', \"timestamp\" AT TIME ZONE 'UTC') "  # noqa: S608
                f"FROM {_q(DEFAULT_PARTITION)}"
            )
            wanted |= {row[0].replace(tzinfo=UTC) for row in cur.fetchall()}
        for start in sorted(wanted - have):
            created.append(_create_month(cur, start, has_default=has_default))
    if now is None:
        _ensured[using] = marker
    return created


def partitions_before(cutoff: datetime, *, using: str = DEFAULT_DB_ALIAS) -> list[Partition]:
    """The monthly partitions whose whole range is older than ``cutoff`` (end <= cutoff), with
    exact row counts, the highest ``seq`` and the number of unsealed rows in each. Changes
    nothing: retention uses it to write its signed checkpoint before dropping."""
    if not is_partitioned(using):
        return []
    if cutoff.tzinfo is None:
        raise ValueError("cutoff must be timezone-aware")
    out = []
    with connections[using].cursor() as cur:
        for p in list_partitions(using):
            if p.end is None or p.end > cutoff:  # the default partition has no end
                continue
            cur.execute(
                f"SELECT count(*), max(seq), count(*) FILTER (WHERE seq IS NULL) FROM {_q(p.name)}"  # noqa: S608
            )
            rows, max_seq, unsealed = cur.fetchone()
            out.append(Partition(p.name, p.start, p.end, rows, max_seq, unsealed))
    return out


def _flush_deferred_fks(cur) -> None:
    """Fire the deferred FK checks queued by rows written earlier in this transaction: a table
    with pending trigger events cannot be dropped. The caller's deferral is restored."""
    names = [name for name, _ in _definitions(cur, TABLE)[1]]
    if names:
        listed = ", ".join(_q(n) for n in names)
        cur.execute(f"SET CONSTRAINTS {listed} IMMEDIATE")
        cur.execute(f"SET CONSTRAINTS {listed} DEFERRED")


def drop_partitions_before(cutoff: datetime, *, using: str = DEFAULT_DB_ALIAS) -> DropResult:
    """Drop every monthly partition entirely older than ``cutoff`` and the findings of its
    activities (``Finding.timestamp`` is the activity's). Rows newer than the newest dropped
    partition, and the default partition, are left for row-wise deletion by the caller.

    This removes rows without tombstones: call it only from retention, after sealing and after
    writing the signed ``Checkpoint`` that covers them (see ``tracking purge``)."""
    result = DropResult()
    if not is_partitioned(using):
        return result
    if cutoff.tzinfo is None:
        raise ValueError("cutoff must be timezone-aware")
    with transaction.atomic(using=using), connections[using].cursor() as cur:
        _lock(cur)
        victims = partitions_before(cutoff, using=using)
        if victims:
            _flush_deferred_fks(cur)
            _allow_delete(cur)
        for p in victims:
            result.rows += p.rows or 0
            if p.max_seq is not None:
                result.max_seq = max(result.max_seq or 0, p.max_seq)
            cur.execute(f"ALTER TABLE {_q(TABLE)} DETACH PARTITION {_q(p.name)}")
            cur.execute(f"DROP TABLE {_q(p.name)}")
            result.partitions.append(p.name)
        if victims:
            result.until = max(p.end for p in victims if p.end is not None)
            cur.execute('DELETE FROM "tracking_finding" WHERE "timestamp" < %s', [result.until])
            result.findings = cur.rowcount
    return result


# --- the migration ---------------------------------------------------------------------------


def _fetchall(cur, sql: str, params=()) -> list[tuple]:
    cur.execute(sql, params)
    return cur.fetchall()


def _definitions(cur, table: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Secondary index definitions and foreign keys of ``table`` (primary key excluded)."""
    indexes = _fetchall(
        cur,
        "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x "
        "JOIN pg_class t ON t.oid = x.indrelid JOIN pg_class i ON i.oid = x.indexrelid "
        "WHERE t.relname = %s AND pg_catalog.pg_table_is_visible(t.oid) AND NOT x.indisprimary",
        [table],
    )
    fks = _fetchall(
        cur,
        "SELECT con.conname, pg_get_constraintdef(con.oid) FROM pg_constraint con "
        "JOIN pg_class t ON t.oid = con.conrelid "
        "WHERE t.relname = %s AND pg_catalog.pg_table_is_visible(t.oid) AND con.contype = 'f'",
        [table],
    )
    return indexes, fks


def _pk_name(cur, table: str) -> str:
    rows = _fetchall(
        cur,
        "SELECT con.conname FROM pg_constraint con JOIN pg_class t ON t.oid = con.conrelid "
        "WHERE t.relname = %s AND pg_catalog.pg_table_is_visible(t.oid) AND con.contype = 'p'",
        [table],
    )
    return rows[0][0] if rows else f"{table}_pkey"


def _index_sql(definition: str, table: str) -> str:
    """Re-point a ``pg_get_indexdef`` result at ``table`` (the name after ON ... USING)."""
    return re.sub(r" ON (ONLY )?\S+ USING ", f" ON {_q(table)} USING ", definition, count=1)


def _rebuild(cur, *, partitioned: bool, months_ahead: int) -> None:
    """Move ``tracking_activity`` into a new table of the other kind, keeping every row, index
    name, foreign key and check constraint. Runs inside the migration's transaction, so a
    failure leaves the old table untouched."""
    _lock(cur)
    _flush_deferred_fks(cur)
    indexes, fks = _definitions(cur, TABLE)
    pk = _pk_name(cur, TABLE)
    cur.execute(f"ALTER TABLE {_q(TABLE)} RENAME TO {_q(LEGACY_TABLE)}")
    suffix = ' PARTITION BY RANGE ("timestamp")' if partitioned else ""
    cur.execute(
        f"CREATE TABLE {_q(TABLE)} (LIKE {_q(LEGACY_TABLE)} INCLUDING DEFAULTS "
        f"INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMMENTS){suffix}"
    )
    if partitioned:
        cur.execute(f"CREATE TABLE {_q(DEFAULT_PARTITION)} PARTITION OF {_q(TABLE)} DEFAULT")
        months = {
            row[0].replace(tzinfo=UTC)
            for row in _fetchall(
                cur,
                f"SELECT DISTINCT date_trunc('month', \"timestamp\" AT TIME ZONE 'UTC') "  # noqa: S608
                f"FROM {_q(LEGACY_TABLE)}",
            )
        }
        current = month_start(datetime.now(UTC))
        months |= {add_months(current, i) for i in range(months_ahead + 1)}
        for start in sorted(months):
            end = add_months(start, 1)
            cur.execute(
                f"CREATE TABLE {_q(partition_name(start))} PARTITION OF {_q(TABLE)} "
                f"FOR VALUES {_bound(start, end)}"
            )
    before = _fetchall(cur, f"SELECT count(*) FROM {_q(LEGACY_TABLE)}")[0][0]  # noqa: S608
    cur.execute(f"INSERT INTO {_q(TABLE)} SELECT * FROM {_q(LEGACY_TABLE)}")  # noqa: S608
    after = _fetchall(cur, f"SELECT count(*) FROM {_q(TABLE)}")[0][0]  # noqa: S608
    if before != after:  # pragma: no cover - would be a PostgreSQL bug; never lose rows
        raise RuntimeError(f"partitioning copied {after} of {before} activities; rolled back")
    cur.execute(f"DROP TABLE {_q(LEGACY_TABLE)}")
    key = '"id", "timestamp"' if partitioned else '"id"'
    cur.execute(f"ALTER TABLE {_q(TABLE)} ADD CONSTRAINT {_q(pk)} PRIMARY KEY ({key})")
    for _name, definition in indexes:
        cur.execute(_index_sql(definition, TABLE))
    for name, definition in fks:
        cur.execute(f"ALTER TABLE {_q(TABLE)} ADD CONSTRAINT {_q(name)} {definition}")
    cur.execute(f"ANALYZE {_q(TABLE)}")


def partition_table(connection, *, months_ahead: int | None = None) -> bool:
    """Convert a plain ``tracking_activity`` into the partitioned layout (keeps all rows).
    Returns False (and does nothing) off PostgreSQL, when disabled by
    ``TRACKING_PARTITIONING = False`` or when the table is already partitioned."""
    if connection.vendor != "postgresql" or not tracking_settings.PARTITIONING:
        return False
    if is_partitioned(connection.alias):
        return False
    if months_ahead is None:
        months_ahead = int(tracking_settings.PARTITION_MONTHS_AHEAD)
    with transaction.atomic(using=connection.alias), connection.cursor() as cur:
        _rebuild(cur, partitioned=True, months_ahead=months_ahead)
    _ensured.pop(connection.alias, None)
    return True


def unpartition_table(connection) -> bool:
    """The reverse: back to one plain table with ``id`` as primary key (keeps all rows)."""
    if connection.vendor != "postgresql" or not is_partitioned(connection.alias):
        return False
    with transaction.atomic(using=connection.alias), connection.cursor() as cur:
        _rebuild(cur, partitioned=False, months_ahead=0)
    _ensured.pop(connection.alias, None)
    return True
