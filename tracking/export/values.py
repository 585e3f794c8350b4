"""The fast export reader: rows as value lists in ``EXPORT_FIELDS`` order, not model instances.

A full export reads millions of rows; per row it must not build a model instance, run the
field descriptors or ask a related manager for findings. Rows come from ``values_list``
(server-side cursor on PostgreSQL; a binary psycopg cursor with ``raw=True``), headers/params
are decrypted with ``crypto`` directly (same AES-GCM check, same associated data as
``EncryptedJSONField``), findings are read once per chunk. The values are exactly
``activity_record``'s (tests compare the two).
"""

from __future__ import annotations

import binascii
import itertools
import json
import logging
import math
from collections.abc import Iterator
from datetime import timezone as dt_timezone
from itertools import islice
from typing import Any

from cryptography.exceptions import InvalidTag
from django.conf import settings
from django.core.exceptions import EmptyResultSet
from django.db import connections, router, transaction
from django.db.models import DateTimeField, F, Func, TextField
from django.db.models.functions import Cast

from tracking.activity_types import type_label
from tracking.export.csvformat import _csv_field, _json_cell
from tracking.export.record import (
    COMPUTED_FIELDS,
    EXPORT_FIELDS,
    FINDING_FIELDS,
    _iso,
    defensive_redact,
    field_kinds,
)
from tracking.integrity import crypto
from tracking.models import Activity, Finding

UTC = dt_timezone.utc

logger = logging.getLogger("tracking.export.records")

CHUNK_SIZE = 2000

# Columns read per row: EXPORT_FIELDS minus the two computed ones, ``user`` as its id column.
_ROW_FIELDS = tuple(n for n in EXPORT_FIELDS if n not in COMPUTED_FIELDS)
_COLUMNS = tuple("user_id" if n == "user" else n for n in _ROW_FIELDS)
_TYPE_AT = EXPORT_FIELDS.index("type_display")
assert EXPORT_FIELDS[_TYPE_AT - 1] == "type" and EXPORT_FIELDS[-1] == "findings"
_I = {name: i for i, name in enumerate(_ROW_FIELDS)}


def _raw_columns() -> list[Any]:
    """``_COLUMNS`` for ``values_list``, with tags/headers/params read as plain text.

    Their field converters (tag list, ``Ciphertext`` wrapper) would run once per row for
    nothing: the export splits the tag text and decrypts the ciphertext itself.
    """

    return [
        Cast(F(c), output_field=TextField()) if c in ("tags", "headers", "params") else c
        for c in _COLUMNS
    ]


class _Decryptor:
    """``crypto.decrypt_bytes`` for millions of tokens: the same checks, the same AES-GCM
    authentication and the same ``DecryptionError`` for every failure, without its per-call
    overhead (key ring scan, base64 module layers), which cost as much as the decryption.
    The key ring is read once per export. Tests compare the two on good and bad tokens."""

    _URLSAFE = bytes.maketrans(b"-_", b"+/")

    def __init__(self) -> None:
        self.keys: dict[str, Any] | None = None

    def __call__(self, token: str, aad: str) -> bytes:
        parts = token.split(":", 2)
        if len(parts) != 3 or parts[0] != crypto.PREFIX:
            raise crypto.DecryptionError("stored value is not a tracking ciphertext")
        if self.keys is None:
            # Read at the first token, not before: an export of no ciphertext needs no keys.
            # The first key with an id wins, as in decrypt_bytes.
            self.keys = {kid: aead for kid, aead in reversed(crypto._keyring())}
        aead = self.keys.get(parts[1])
        if aead is None:
            return crypto.decrypt_bytes(token, aad)  # raises with the full explanation
        try:
            # base64.urlsafe_b64decode, unrolled
            blob = binascii.a2b_base64(parts[2].encode("ascii").translate(self._URLSAFE))
            return aead.decrypt(blob[:12], blob[12:], aad.encode("utf-8"))
        except (InvalidTag, ValueError, binascii.Error) as exc:
            raise crypto.DecryptionError(
                "ciphertext failed authentication (wrong key, or moved from another row/field)"
            ) from exc


class PayloadCache:
    """Headers/params of exported rows: decrypted with ``crypto`` (the field's AES-GCM and
    associated data ``table.field.pk``; every row is still authenticated), redacted on
    output like ``decrypted_field``.

    Equal plaintexts (the same headers on many rows) are parsed, redacted and JSON-encoded
    once per export; cached values are shared between records (read-only). Bounded: the
    cache starts over after ``limit`` (default ``LIMIT``) distinct payloads per field, about
    2.3 KB each for 500-byte headers (46 MB for 20,000 headers and 20,000 params).
    """

    LIMIT = 20_000

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit or self.LIMIT
        self.values: dict[str, dict[bytes, Any]] = {"headers": {}, "params": {}}
        # CSV field (quoted) by id() of a cached value: valid while the value is cached.
        self.cells: dict[int, str] = {}
        self.decrypt = _Decryptor()

    def value(self, name: str, token: Any, aad: str, pk: Any) -> Any:
        if token is None:
            return defensive_redact(name, None)
        try:
            plain = self.decrypt(token, aad)
        except crypto.DecryptionError:
            # Unreadable with the configured keys: export the row without this field
            # rather than aborting a stream of millions of rows.
            logger.warning("could not decrypt %s of activity %s", name, pk)
            return None
        cache = self.values[name]
        value = cache.get(plain)
        if value is None:
            value = defensive_redact(name, json.loads(plain.decode("utf-8")))
            if value is None:
                return None
            if len(cache) >= self.limit:
                cache.clear()
                self.cells.clear()  # ids of evicted values may be reused
            cache[plain] = value
            self.cells[id(value)] = _csv_field(_json_cell(value))
        return value

    def field(self, value: Any) -> str:
        """The CSV field (``csv_cells``' text, quoted) of a headers/params value."""
        if value is None:
            return ""
        text = self.cells.get(id(value))
        if text is None:
            text = _csv_field(_json_cell(value))
        return text


def _finding_rows(finding_model: Any, ids: list[Any], text_ids: bool = False) -> Iterator[tuple]:
    """(activity_id, *FINDING_FIELDS) of the unsuppressed findings of ``ids``.

    ``text_ids`` (PostgreSQL only): ``ids`` and the returned activity ids are UUID text, as
    the raw reader (``_pg_chunks``) reads them.
    """

    using = router.db_for_read(finding_model)
    connection = connections[using]
    if connection.vendor == "postgresql":
        # One array parameter instead of thousands of placeholders (which cost more to
        # build and parse than the lookup itself).
        qn = connection.ops.quote_name
        key = qn("activity_id")
        columns = ", ".join(qn(c) for c in FINDING_FIELDS)
        if text_ids:
            # UUID text joined into one string: a list of thousands of strings costs more
            # to adapt and send than the lookup itself.
            selected, operand, param = (
                f"{key}::text",
                "string_to_array(%s, ',')::uuid[]",
                ",".join(ids),
            )
        else:
            selected, operand, param = key, "%s", list(ids)  # type: ignore[assignment]  # the driver adapts a list as an array
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {selected}, {columns}"  # noqa: S608
                f" FROM {qn(finding_model._meta.db_table)}"
                f" WHERE {key} = ANY({operand}) AND NOT {qn('suppressed')}",
                [param],
            )
            yield from cursor.fetchall()
        return
    # Elsewhere: IN lists within SQLite's historical 999-variable limit.
    for start in range(0, len(ids), 900):
        yield from (
            finding_model.objects.using(using)
            .filter(activity_id__in=ids[start : start + 900], suppressed=False)
            .order_by()
            .values_list("activity_id", *FINDING_FIELDS)
        )


def _findings_by_activity(
    ids: list[Any], text_ids: bool = False
) -> dict[Any, list[dict[str, Any]]]:
    """Unsuppressed findings of ``ids`` in ``activity_record``'s order, one query."""

    found: dict[Any, list[tuple]] = {}
    for row in _finding_rows(Finding, ids, text_ids):
        found.setdefault(row[0], []).append(row[1:])
    out: dict[Any, list[dict[str, Any]]] = {}
    for pk, items in found.items():
        # detector, tag, score, severity, reason: sorted by (-score, detector, tag)
        items.sort(key=lambda f: (-f[2], f[0], f[1]))
        out[pk] = [dict(zip(FINDING_FIELDS, f, strict=True)) for f in items]
    return out


def raw_reader_applies(queryset: Any) -> bool:
    """Whether ``iter_values(..., raw=True)`` reads ``queryset`` with ``_pg_chunks``:
    PostgreSQL through psycopg 3 with ``USE_TZ`` (elsewhere the values_list path)."""

    connection = connections[queryset.db]
    if connection.vendor != "postgresql" or not settings.USE_TZ:
        return False
    from django.db.backends.postgresql.psycopg_any import is_psycopg3  # optional: psycopg

    return is_psycopg3


def _pg_columns() -> list[Any]:
    """``_COLUMNS`` as the raw reader selects them: each in a form whose binary value loads
    in C straight to what the record needs.

    ``id`` as UUID text (``str(uuid)`` is the same text); ``timestamp`` as UTC wall time
    (naive: Django's own timestamptz loader is Python code); inet columns through
    ``abbrev``, which is ``inet_out`` (the text Django reads, not ``ipaddress`` objects).
    """

    def column(name: str) -> Any:
        if name == "id":
            return Cast(F(name), output_field=TextField())
        if name == "timestamp":
            return Func(
                F(name),
                template="(%(expressions)s AT TIME ZONE 'UTC')",
                output_field=DateTimeField(),
            )
        if name in ("ip_address", "remote_addr"):
            return Func(F(name), function="abbrev", output_field=TextField())
        return name

    return [column(c) for c in _COLUMNS]


def _pg_chunks(queryset: Any, chunk_size: int) -> Iterator[list[tuple]]:
    """Rows of ``queryset`` (``_pg_columns``) in chunks, through a psycopg named cursor in
    binary format on the queryset's Django connection.

    The SQL is the queryset's own (every filter and the order apply); skipping the ORM's
    per-value converters and reading binary values is what makes this path faster. Runs
    in a transaction (a savepoint inside one): a named cursor outside one would be
    ``WITH HOLD``, materialised on the server before the first row.
    """

    query = queryset.prefetch_related(None).values_list(*_pg_columns()).query
    try:
        sql, params = query.sql_with_params()
    except EmptyResultSet:  # .none(), an empty __in: no query, as Django does
        return
    with transaction.atomic(using=queryset.db):
        connection = connections[queryset.db]
        connection.ensure_connection()
        name = f"tracking_export_{next(_CURSOR_IDS)}"
        with connection.connection.cursor(name=name, binary=True) as cursor:
            cursor.execute(sql, tuple(params))
            while rows := cursor.fetchmany(chunk_size):
                yield rows


_CURSOR_IDS = itertools.count()


def _orm_chunks(queryset: Any, chunk_size: int) -> Iterator[list[tuple]]:
    # prefetch_related(None): a caller's prefetch would run on value tuples (findings are
    # fetched per chunk anyway).
    rows = (
        queryset.prefetch_related(None).values_list(*_raw_columns()).iterator(chunk_size=chunk_size)
    )
    while chunk := list(islice(rows, chunk_size)):
        yield chunk


def iter_values(
    queryset: Any,
    chunk_size: int | None = None,
    *,
    payloads: PayloadCache | None = None,
    raw: bool = False,
) -> Iterator[list[Any]]:
    """Each row of ``queryset`` as a list of its record's values in ``EXPORT_FIELDS`` order
    (``activity_record`` without the dict), read lazily in chunks.

    ``raw``: read with ``_pg_chunks`` where ``raw_reader_applies`` (same values, faster).
    """

    chunk_size = chunk_size or CHUNK_SIZE
    payloads = payloads or PayloadCache()
    table = Activity._meta.db_table
    headers_aad = f"{table}.headers."
    params_aad = f"{table}.params."
    i_id, i_ts, i_user, i_tags = _I["id"], _I["timestamp"], _I["user"], _I["tags"]
    i_headers, i_params, i_type = _I["headers"], _I["params"], _I["type"]
    floats = tuple(_I[n] for n, kind in field_kinds().items() if kind == "FloatField")
    labels: dict[str, str] = {}
    payload = payloads.value
    isfinite = math.isfinite
    utc = UTC
    # The raw reader gives ids as text and timestamps as naive UTC.
    raw = raw and raw_reader_applies(queryset)
    chunks = (_pg_chunks if raw else _orm_chunks)(queryset, chunk_size)
    for chunk in chunks:
        findings = _findings_by_activity([r[i_id] for r in chunk], text_ids=raw)
        for row in chunk:
            values = list(row)
            pk = row[i_id]
            ts = row[i_ts]
            if raw:
                spk = pk
                values[i_ts] = ts.isoformat() + "+00:00"
            else:
                spk = values[i_id] = str(pk)
                values[i_ts] = ts.isoformat() if ts.tzinfo is utc else _iso(ts)  # UTC ISO text
            user = row[i_user]
            if user is not None and not isinstance(user, int | str):
                values[i_user] = str(user)  # e.g. a UUID primary key of a custom user model
            tags = row[i_tags]  # stored text ",a,b,": TagListField.to_python, then sorted
            values[i_tags] = sorted([t for t in tags.split(",") if t]) if tags else []
            values[i_headers] = payload("headers", row[i_headers], headers_aad + spk, pk)
            values[i_params] = payload("params", row[i_params], params_aad + spk, pk)
            for i in floats:
                v = row[i]
                if v is not None and not isfinite(v):
                    values[i] = None  # NaN/Infinity are not JSON
            type_ = row[i_type]
            label = labels.get(type_)
            if label is None:
                label = labels[type_] = type_label(type_)
            values.insert(_TYPE_AT, label)
            values.append(findings.get(pk, []))
            yield values
