"""Bulk inserts of new rows: PostgreSQL ``COPY`` where it pays off, else a prepared ``INSERT``
(``bulk_create`` for models with auto-increment keys, which need them read back).

``bulk_create`` of a writer batch builds a statement with one placeholder per field and row
(Django 5.2's ``UNNEST`` arrays) and has psycopg quote every parameter; ``COPY`` streams the
same values without either. Values are produced exactly as ``bulk_create`` produces them (``pre_save`` then
``get_db_prep_save`` per field, related fields prepared the same way), so the stored rows
are identical. Differences callers must accept: auto-increment primary keys are not read
back (the objects keep ``pk = None``), and nothing else in the batch may need the rows'
database defaults. Failures raise Django's exceptions (``IntegrityError``,
``OperationalError``...) like ``bulk_create`` does.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache

from django.db import connections, models, router

from tracking.binding import server_bound_cursor
from tracking.fields import Ciphertext, EncryptedJSONField

# Below this many rows one INSERT is as fast as COPY (which costs an extra round trip).
MIN_ROWS = 50


# Field classes (exactly these, not subclasses) whose get_db_prep_save returns a value of this
# Python type unchanged: skipping the call for such values (and None) stores the same bytes.
_PLAIN: dict[type, type] = {
    models.CharField: str,
    models.TextField: str,
    models.BooleanField: bool,
    models.IntegerField: int,
    models.BigIntegerField: int,
    models.SmallIntegerField: int,
    models.PositiveIntegerField: int,
    models.PositiveSmallIntegerField: int,
    models.PositiveBigIntegerField: int,
    models.FloatField: float,
}

# Django's own field classes prepare None as None; a nullable one's None skips the call.
_NONE_IS_NULL = (
    models.DateTimeField,
    models.DateField,
    models.UUIDField,
    models.GenericIPAddressField,
    models.ForeignKey,
    models.IntegerField,
    models.FloatField,
    models.CharField,
    models.TextField,
)


def _plain_kind(field: models.Field) -> type | None:
    if type(field) is EncryptedJSONField:
        return Ciphertext  # encrypted in pre_save; get_prep_value passes Ciphertext through
    return _PLAIN.get(type(field))


def _none_is_null(field: models.Field) -> bool:
    return field.null and type(field) in _NONE_IS_NULL


def _plain_pre_save(field: models.Field) -> bool:
    """``field.pre_save(obj, add=True)`` is just ``getattr(obj, field.attname)``."""
    if type(field).pre_save is models.Field.pre_save:
        return True
    if type(field).pre_save is models.DateTimeField.pre_save:
        return not (getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False))
    return False


# Markers for values prepared another way than "unchanged when of the plain type":
# an aware datetime passes unchanged where the backend adapts datetimes as themselves
# (PostgreSQL; a naive one takes Django's path, which warns and makes it aware), and an
# address is prepared once per distinct text (PostgreSQL parses each into an address object).
_AWARE = object()
_MEMO = object()
_memo: dict[tuple[models.Field, str, str], object] = {}
MEMO_SIZE = 10_000


def _kind(field: models.Field, vendor: str) -> object:
    plain = _plain_kind(field)
    if plain is not None:
        return plain
    if vendor == "postgresql":
        if type(field) is models.UUIDField:
            return uuid.UUID  # native uuid column: get_db_prep_value returns a UUID as is
        if type(field) is models.DateTimeField:
            return _AWARE
    if type(field) is models.GenericIPAddressField:
        return _MEMO
    return None


def _plan(fields: list[models.Field], connection) -> list[tuple]:
    """Per field: (field, how its value is prepared, attname when pre_save is a getattr,
    None is NULL)."""
    return _cached_plan(tuple(fields), connection.vendor)


@lru_cache(maxsize=64)
def _cached_plan(fields: tuple[models.Field, ...], vendor: str) -> list[tuple]:
    # Model fields do not change at run time; a synchronous request inserts one row, for
    # which working this out again cost as much as preparing the row.
    return [
        (
            f,
            _kind(f, vendor),
            f.attname if _plain_pre_save(f) else None,
            _none_is_null(f) or _plain_kind(f) is not None,
        )
        for f in fields
    ]


def _memoised(field: models.Field, value: object, connection) -> object:
    if type(value) is not str:
        return field.get_db_prep_save(value, connection)
    key = (field, connection.vendor, value)
    found = _memo.get(key)
    if found is None:
        if len(_memo) >= MEMO_SIZE:
            _memo.clear()
        found = _memo[key] = field.get_db_prep_save(value, connection)
    return found


def _row(plan: list[tuple], obj: models.Model, connection) -> list[object]:
    row: list[object] = []
    append = row.append
    for field, kind, attname, none_is_null in plan:
        value = getattr(obj, attname) if attname else field.pre_save(obj, True)
        if value is None:
            append(None if none_is_null else field.get_db_prep_save(value, connection))
        elif type(value) is kind:
            append(value)
        elif kind is _AWARE and type(value) is datetime and value.tzinfo is not None:
            append(value)
        elif kind is _MEMO:
            append(_memoised(field, value, connection))
        else:
            append(field.get_db_prep_save(value, connection))
    return row


def _copy_fields(model: type[models.Model], objs: Sequence[models.Model]) -> list[models.Field]:
    fields = [f for f in model._meta.concrete_fields if not getattr(f, "generated", False)]
    if any(obj.pk is None for obj in objs):
        # The database assigns auto-increment keys (as bulk_create leaves them out).
        fields = [f for f in fields if not isinstance(f, models.AutoField)]
    return fields


def _use_copy(connection, objs: Sequence[models.Model]) -> bool:
    if connection.vendor != "postgresql" or len(objs) < MIN_ROWS:
        return False
    try:
        import psycopg  # noqa: F401 - COPY through psycopg 3's cursor.copy()
    except ImportError:
        return False
    return not _in_pipeline(connection)


def _in_pipeline(connection) -> bool:
    """psycopg's pipeline mode (a small batch's writes, see ``ingest._pipelined``) refuses
    COPY: the rows go by INSERT there."""
    raw = connection.connection
    pgconn = getattr(raw, "pgconn", None)
    return pgconn is not None and bool(pgconn.pipeline_status)


def _prepared(
    model: type[models.Model], objs: Sequence[models.Model], connection
) -> tuple[list[models.Field], list[list[object]]]:
    """The columns and the rows to insert, each value as ``bulk_create`` would bind it."""
    for obj in objs:
        if obj.pk is None and not isinstance(model._meta.pk, models.AutoField):
            obj.pk = model._meta.pk.get_pk_value_on_save(obj)
        if obj._state.fields_cache:
            # Only a cached related object needs preparing (its key copied, unsaved ones
            # refused); with none cached Django's walk over every field does nothing.
            obj._prepare_related_fields_for_save(operation_name="bulk_create")  # type: ignore[attr-defined]  # private Model API, not in django-stubs
    fields = _copy_fields(model, objs)
    plan = _plan(fields, connection)
    return fields, [_row(plan, obj, connection) for obj in objs]


_statements: dict[tuple, str] = {}


def _statement(
    kind: str, model: type[models.Model], fields: tuple[models.Field, ...], connection
) -> str:
    """The ``INSERT``, ``UNNEST`` (PostgreSQL: ``INSERT ... SELECT * FROM unnest(<one array
    per column>) RETURNING <key>``) or ``COPY`` statement for these columns, built once per
    backend: quoting 36 column names again for every synchronous request's one-row insert showed up
    in its profile. Only quoted model identifiers are interpolated; values are bound
    parameters (INSERT, UNNEST) or streamed as data (COPY)."""
    key = (kind, model, fields, connection.vendor)
    found = _statements.get(key)
    if found is None:
        quote = connection.ops.quote_name
        table = quote(model._meta.db_table)
        columns = ", ".join(quote(f.column) for f in fields)
        if kind == "COPY":
            found = f"COPY {table} ({columns}) FROM STDIN"
        elif kind == "UNNEST":
            # Binary (%b): text arrays escape every element with a regular expression.
            arrays = ", ".join(f"%b::{f.db_type(connection)}[]" for f in fields)
            pk = quote(model._meta.pk.column)
            found = (
                f"INSERT INTO {table} ({columns}) "  # noqa: S608
                f"SELECT * FROM unnest({arrays}) RETURNING {pk}"
            )
        else:
            marks = ", ".join(["%s"] * len(fields))
            found = f"INSERT INTO {table} ({columns}) VALUES ({marks})"  # noqa: S608
        _statements[key] = found
    return found


def _saved(objs: Sequence[models.Model], using: str) -> None:
    for obj in objs:
        obj._state.adding = False
        obj._state.db = using


def _insert_rows(model: type[models.Model], objs: Sequence[models.Model], connection, using):
    """A small batch, or any batch on SQLite: one prepared ``INSERT`` run per row
    (``executemany``) with the values ``_row`` prepares. ``bulk_create`` compiled the
    statement for every call, which cost more than a synchronous request's insert itself."""
    fields, rows = _prepared(model, objs, connection)
    statement = _statement("INSERT", model, tuple(fields), connection)
    with connection.cursor() as cursor:
        if len(rows) == 1:
            cursor.execute(statement, rows[0])
        else:
            cursor.executemany(statement, rows)
    _saved(objs, using)


def _insert_unnest(model: type[models.Model], objs: Sequence[models.Model], connection, using):
    """PostgreSQL with psycopg 3: ``INSERT ... SELECT * FROM unnest(<one array per column>)
    RETURNING <key>``, the arrays bound server-side; each object gets its new key (rows come
    back in the order given, which bulk_create relies on too). False (nothing done) where
    ``tracking.binding`` gives no cursor. Django 5.2's ``bulk_create`` sends the same arrays,
    which its client-side binding quoted value by value: a tenth of a batch step's CPU for
    its findings."""
    cursor = server_bound_cursor(connection)
    if cursor is None:
        return False
    fields, rows = _prepared(model, objs, connection)
    statement = _statement("UNNEST", model, tuple(fields), connection)
    with connection.wrap_database_errors, cursor:
        cursor.execute(statement, [list(column) for column in zip(*rows, strict=True)])
        keys = [row[0] for row in cursor.fetchall()]
    for obj, new in zip(objs, keys, strict=True):
        obj.pk = new
    _saved(objs, using)
    return True


def insert(model: type[models.Model], objs: Sequence[models.Model]) -> None:
    """Insert new ``objs`` of ``model`` (like ``bulk_create(objs)``, see the module docstring)."""
    if not objs:
        return
    using = router.db_for_write(model)
    connection = connections[using]
    if not _use_copy(connection, objs):
        if isinstance(model._meta.pk, models.AutoField):
            # The new keys are read back (RETURNING), as bulk_create does.
            if not _insert_unnest(model, objs, connection, using):
                model._default_manager.using(using).bulk_create(objs)
        else:
            _insert_rows(model, objs, connection, using)
        return
    fields, rows = _prepared(model, objs, connection)
    statement = _statement("COPY", model, tuple(fields), connection)
    with connection.cursor() as cursor, connection.wrap_database_errors:
        raw = cursor.cursor  # psycopg's own cursor: COPY is not part of Django's cursor API
        if not hasattr(raw, "copy"):  # psycopg2: keep the portable path
            model._default_manager.using(using).bulk_create(objs)
            return
        with raw.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)
    _saved(objs, using)
