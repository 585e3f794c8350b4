"""The profile store: per-user detection state (``Profile``) and population counters
(``Counter``), read in one query per batch and written back in bulk at the end of it.

Writes are upserts with absolute values computed from what the batch read. Two workers
updating the same user at the same instant may lose one's update of that row (the next event
repairs it); population counters are statistics, where that is harmless.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from datetime import timezone as dt_timezone
from typing import Any

from django.db import connections, router
from django.utils import timezone

from detectors.profile import UserProfile
from tracking.models import Counter, Profile

UTC = dt_timezone.utc

CHUNK = 500  # keeps IN lists under SQLite's parameter limit
COUNTER_CHUNK = 4000  # counter keys per query where the database has no lower limit


def profile_key(user_id: Any, username: str | None) -> str | None:
    """``u:<pk>`` for known users, ``n:<username>`` for username-only events, else None."""
    if user_id not in (None, ""):
        return f"u:{user_id}"
    if username:
        return f"n:{username}"[:200]
    return None


def _select_in(
    connection, head: str, keys: list[str], size: int, params: tuple = ()
) -> Iterator[tuple]:
    """Rows of ``<head> IN (<keys>)``, one plain statement per ``size`` keys: compiling the
    ORM's ``IN`` list, key by key, cost more than the database's answer. ``head`` holds only
    quoted model identifiers (and ``params``' placeholders); every key is a bound parameter."""
    with connection.cursor() as cursor:
        for i in range(0, len(keys), size):
            chunk = keys[i : i + size]
            marks = ", ".join(["%s"] * len(chunk))
            cursor.execute(f"{head} IN ({marks})", [*params, *chunk])
            yield from cursor.fetchall()


def load_profiles(keys: Iterable[str]) -> dict[str, UserProfile]:
    """The stored profiles of ``keys`` (missing keys are left out); plain statements: the
    ORM query cost a synchronous request more than reading its one profile."""
    keys = sorted({k for k in keys if k})
    out: dict[str, UserProfile] = {}
    if not keys:
        return out
    connection = connections[router.db_for_read(Profile)]
    q = connection.ops.quote_name
    table, key_col, data_col = q(Profile._meta.db_table), q("key"), q("data")
    data_field: Any = Profile._meta.get_field("data")
    head = f"SELECT {key_col}, {data_col} FROM {table} WHERE {key_col}"  # noqa: S608
    for key, raw in _select_in(connection, head, keys, CHUNK):
        data = data_field.from_db_value(raw, None, connection)
        out[key] = UserProfile(data if isinstance(data, dict) else {}, key=key)
    return out


def _dt(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


_COLUMNS = ("key", "data", "events", "first_seen", "last_seen", "updated_at")


def _upsert_sql(connection, model, columns: tuple[str, ...], unique: tuple[str, ...]) -> str:
    """``INSERT … ON CONFLICT (unique) DO UPDATE`` setting every other column to the new
    value: the same statement on SQLite (>= 3.24) and PostgreSQL."""
    q = connection.ops.quote_name
    cols = ", ".join(q(c) for c in columns)
    marks = ", ".join(["%s"] * len(columns))
    updates = ", ".join(f"{q(c)} = excluded.{q(c)}" for c in columns if c not in unique)
    conflict = ", ".join(q(c) for c in unique)
    # Only quoted model identifiers are interpolated; every value is a bound parameter.
    table = q(model._meta.db_table)
    insert = f"INSERT INTO {table} ({cols}) VALUES ({marks}) "  # noqa: S608
    return insert + f"ON CONFLICT ({conflict}) DO UPDATE SET {updates}"


def save_profiles(profiles: Iterable[UserProfile]) -> int:
    """Upsert the changed profiles with one prepared statement; returns how many.

    Plain ``executemany`` instead of ``bulk_create(update_conflicts=True)``: the ORM spends
    more time compiling one placeholder per field and row than the database spends writing.
    """
    profiles = [p for p in profiles if p.dirty and p.key]
    if not profiles:
        return 0
    connection = connections[router.db_for_write(Profile)]
    meta: Any = Profile._meta  # get_field() below returns concrete fields
    data_f, events_f = meta.get_field("data"), meta.get_field("events")
    first_f, last_f, upd_f = (
        meta.get_field("first_seen"),
        meta.get_field("last_seen"),
        meta.get_field("updated_at"),
    )
    now = upd_f.get_db_prep_save(timezone.now(), connection)
    rows = [
        (
            p.key,
            data_f.get_db_prep_save(p.data, connection),
            events_f.get_db_prep_save(p.events, connection),
            first_f.get_db_prep_save(_dt(p.first_seen), connection),
            last_f.get_db_prep_save(_dt(p.last_seen), connection),
            now,
        )
        for p in profiles
    ]
    with connection.cursor() as cursor:
        cursor.executemany(_upsert_sql(connection, Profile, _COLUMNS, ("key",)), rows)
    for p in profiles:
        p.dirty = False
    return len(rows)


def load_counters(namespace: str, keys: Iterable[str]) -> dict[str, int]:
    """The stored counts of ``keys`` in ``namespace`` (missing keys are left out); plain
    statements, as in ``load_profiles``: a batch reads a couple of thousand keys."""
    keys = sorted(set(keys))
    if not keys:
        return {}
    connection = connections[router.db_for_read(Counter)]
    # As many keys per query as the database takes (SQLite: 999 parameters, the namespace
    # one of them): a failed login reads the campaign detectors' hourly history (~1,000 keys).
    limit = connection.features.max_query_params
    size = min(COUNTER_CHUNK, limit - 1) if limit else COUNTER_CHUNK
    q = connection.ops.quote_name
    table, key_col = q(Counter._meta.db_table), q("key")
    head = (
        f"SELECT {key_col}, {q('count')} FROM {table} "  # noqa: S608
        f"WHERE {q('namespace')} = %s AND {key_col}"
    )
    return dict(_select_in(connection, head, keys, size, (namespace,)))


def save_counters(namespace: str, counts: dict[str, int]) -> int:
    """Upsert absolute counts with one prepared statement (sorted keys: concurrent writers
    lock rows in the same order). ``executemany`` for the same reason as ``save_profiles``:
    ``bulk_create(update_conflicts=True)`` spent most of its time compiling SQL (profiled)."""
    rows = [(namespace, k, int(v)) for k, v in sorted(counts.items())]
    if not rows:
        return 0
    connection = connections[router.db_for_write(Counter)]
    with connection.cursor() as cursor:
        sql = _upsert_sql(connection, Counter, ("namespace", "key", "count"), ("namespace", "key"))
        cursor.executemany(sql, rows)
    return len(rows)
