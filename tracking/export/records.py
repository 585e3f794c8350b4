"""Export records and formats shared by the API export, the ``tracking export`` CLI and import.

Framework-free on purpose (no request): give ``stream_export`` any Activity queryset and a
format and it yields text chunks, reading the rows with ``QuerySet.iterator`` so memory stays
constant however many rows are exported. ``iter_values(..., raw=True)`` (the ``tracking
export`` command) reads PostgreSQL through a binary psycopg cursor instead, for speed; the
command can also split the export over processes (``export_parallel``).

The record (``activity_record``) holds every Activity field in ``EXPORT_FIELDS`` order and is
JSON-safe. Encodings:

* ``json``: one JSON array; ``ndjson``: one object per line. ``ensure_ascii`` escapes every
  control and non-ASCII character, so the output is valid JSON for any stored content.
* ``csv``: a header row, then one row per activity. ``tags`` are ``;``-joined, ``headers``,
  ``params`` and ``findings`` are JSON text, booleans ``true``/``false``, null is empty.
  Cells starting with ``=``, ``+``, ``-``, ``@``, tab or CR (formula triggers in
  spreadsheets; a negative longitude too) are prefixed with ``'``; so are cells that already
  start with ``'``, which makes ``record_from_csv_row`` (strip one leading ``'``) lossless.
"""

from __future__ import annotations

import binascii
import csv
import functools
import io
import itertools
import json
import logging
import math
from collections.abc import Iterable, Iterator
from datetime import datetime
from datetime import timezone as dt_timezone
from itertools import islice
from typing import Any

from cryptography.exceptions import InvalidTag

from tracking.integrity import crypto

UTC = dt_timezone.utc

logger = logging.getLogger(__name__)

FORMATS = ("csv", "json", "ndjson")
CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
    "ndjson": "application/x-ndjson",
}

EXPORT_FIELDS: tuple[str, ...] = (
    "id",
    "timestamp",
    "type",
    "type_display",
    "flagged",
    "tags",
    "user",
    "username",
    "session_id",
    "ip_address",
    "remote_addr",
    "forwarded_for",
    "isp",
    "asn",
    "country",
    "region",
    "city",
    "latitude",
    "longitude",
    "accuracy_radius",
    "device",
    "os",
    "browser",
    "is_mobile",
    "is_bot",
    "user_agent",
    "endpoint",
    "method",
    "status",
    "outcome",
    "headers",
    "params",
    "duration",
    "risk_score",
    "severity",
    "review_status",
    "findings",
)

FINDING_FIELDS = ("detector", "tag", "score", "severity", "reason")

# Typed fields of the record, for decoding CSV text back to values.
BOOL_FIELDS = frozenset({"flagged", "is_mobile", "is_bot"})
INT_FIELDS = frozenset({"asn", "accuracy_radius", "status"})
FLOAT_FIELDS = frozenset({"latitude", "longitude", "duration", "risk_score"})
JSON_FIELDS = frozenset({"headers", "params", "findings"})

# What an empty CSV cell means per column (text columns: the empty string).
_EMPTY: dict[str, Any] = {
    **dict.fromkeys(
        BOOL_FIELDS | INT_FIELDS | FLOAT_FIELDS | {"user", "ip_address", "remote_addr"}
    ),
    "headers": {},
    "params": {},
    "findings": [],
}

CSV_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "'")

CHUNK_SIZE = 2000


def _iso(ts: datetime) -> str:
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).isoformat()


def decrypted_field(activity: Any, name: str) -> Any:
    from tracking.integrity.crypto import DecryptionError

    try:
        value = getattr(activity, name)
    except DecryptionError:
        # Unreadable with the configured keys: export the row without this field rather
        # than aborting a stream of millions of rows.
        logger.warning("could not decrypt %s of activity %s", name, activity.pk)
        return None
    return defensive_redact(name, value)


def defensive_redact(name: str, value: Any) -> Any:
    """Redact ``headers``/``params`` again on output (values are redacted at write time;
    this is defence in depth against rows written by an older or misconfigured version)."""
    if not isinstance(value, dict):
        return value
    try:
        from tracking import redaction
    except ImportError:
        return value
    func = getattr(redaction, "redact_headers" if name == "headers" else "redact_mapping", None)
    if func is None:
        return value
    try:
        return func(value)
    except Exception:  # a redaction bug must not expose or lose the record
        logger.exception("output redaction failed for %s", name)
        return value


def finding_record(finding: Any) -> dict[str, Any]:
    return {name: getattr(finding, name) for name in FINDING_FIELDS}


def activity_record(activity: Any) -> dict[str, Any]:
    """Every field of ``activity`` as a JSON-safe dict in ``EXPORT_FIELDS`` order.

    Findings come from ``activity.findings.all()`` (prefetch them for many rows); suppressed
    findings are audit-only and not part of the verdict, so they are left out.
    """
    findings = [
        finding_record(f)
        for f in sorted(activity.findings.all(), key=lambda f: (-f.score, f.detector, f.tag))
        if not f.suppressed
    ]
    record: dict[str, Any] = {}
    for name in EXPORT_FIELDS:
        if name == "timestamp":
            value: Any = _iso(activity.timestamp)
        elif name == "id":
            value = str(activity.id)
        elif name == "user":
            value = activity.user_id
            if value is not None and not isinstance(value, int | str):
                value = str(value)  # e.g. a UUID primary key of a custom user model
        elif name == "tags":
            value = sorted(activity.tags or [])
        elif name in ("headers", "params"):
            value = decrypted_field(activity, name)
        elif name == "findings":
            value = findings
        else:
            value = getattr(activity, name)
            if isinstance(value, float) and not math.isfinite(value):
                value = None  # NaN/Infinity are not JSON; such a value carries no measurement
        record[name] = value
    return record


def neutralise(cell: str) -> str:
    """Defuse spreadsheet formula injection in one CSV text cell."""
    if cell and cell.startswith(CSV_TRIGGERS):
        return "'" + cell
    return cell


def csv_cells(record: dict[str, Any]) -> list[str]:
    """One record as CSV cell strings, in ``EXPORT_FIELDS`` order."""
    cells = []
    for name in EXPORT_FIELDS:
        value = record.get(name)
        if value is None:
            cells.append("")
            continue
        if name == "tags":
            text = ";".join(value)
        elif name in JSON_FIELDS:
            text = json.dumps(value, ensure_ascii=False, sort_keys=True)
        elif isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, float):
            text = repr(value)
        else:
            text = str(value)
        # Every cell, numbers included: "-0.12" is harmless but the rule stays simple to audit
        # (no cell of the file starts with a trigger) and to invert (strip one "'").
        cells.append(neutralise(text))
    return cells


def record_from_csv_row(row: dict[str, str]) -> dict[str, Any]:
    """Invert ``csv_cells``: a CSV row (``csv.DictReader``) back to a JSON-form record.

    Missing columns are left out (minimal records); bad values raise ``ValueError`` naming
    the column.
    """
    record: dict[str, Any] = {}
    for name, raw in row.items():
        if name is None or name not in EXPORT_FIELDS or raw is None:
            continue
        text = raw[1:] if raw.startswith("'") else raw
        try:
            if name == "tags":
                value: Any = [t for t in text.split(";") if t]
            elif text == "":
                value = _EMPTY.get(name, "")
            elif name in BOOL_FIELDS:
                if text.lower() not in ("true", "false", "1", "0"):
                    raise ValueError(f"not a boolean: {text!r}")
                value = text.lower() in ("true", "1")
            elif name in INT_FIELDS:
                value = int(text)
            elif name in FLOAT_FIELDS:
                value = float(text)
            elif name in JSON_FIELDS:
                value = json.loads(text)
            elif name == "user":
                value = int(text) if text.isdigit() else text
            else:
                value = text
        except ValueError as exc:
            raise ValueError(f"column {name!r}: {exc}") from exc
        record[name] = value
    return record


# --- the fast path: rows as value lists, not model instances ------------------------------
#
# A full export reads millions of rows; per row it must not build a model instance, run the
# field descriptors or ask a related manager for findings. Rows come from ``values_list``
# (server-side cursor on PostgreSQL), headers/params are decrypted with ``crypto`` directly
# (same AES-GCM check, same associated data as ``EncryptedJSONField``), findings are read
# once per chunk. The values are exactly ``activity_record``'s (tests compare the two).

# Columns read per row: EXPORT_FIELDS minus the two computed ones, ``user`` as its id column.
_COMPUTED = ("type_display", "findings")
_ROW_FIELDS = tuple(n for n in EXPORT_FIELDS if n not in _COMPUTED)
_COLUMNS = tuple("user_id" if n == "user" else n for n in _ROW_FIELDS)
_TYPE_AT = EXPORT_FIELDS.index("type_display")
assert EXPORT_FIELDS[_TYPE_AT - 1] == "type" and EXPORT_FIELDS[-1] == "findings"
_I = {name: i for i, name in enumerate(_ROW_FIELDS)}


def _raw_columns() -> list[Any]:
    """``_COLUMNS`` for ``values_list``, with tags/headers/params read as plain text.

    Their field converters (tag list, ``Ciphertext`` wrapper) would run once per row for
    nothing: the export splits the tag text and decrypts the ciphertext itself.
    """
    from django.db.models import F, TextField
    from django.db.models.functions import Cast

    return [
        Cast(F(c), output_field=TextField()) if c in ("tags", "headers", "params") else c
        for c in _COLUMNS
    ]


def _field_kinds() -> dict[str, str]:
    """Internal type of each exported model column (decides the CSV cell encoding)."""
    from tracking.models import Activity

    return {
        n: Activity._meta.get_field(n).get_internal_type()
        for n in _ROW_FIELDS
        if n not in ("user", "id", "timestamp", "tags", "headers", "params")
    }


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
    from django.db import connections, router

    using = router.db_for_read(finding_model)
    param: str | list[Any]
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
            selected, operand, param = key, "%s", list(ids)
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
    from tracking.models import Finding

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
    from django.conf import settings
    from django.db import connections

    connection = connections[queryset.db]
    if connection.vendor != "postgresql" or not settings.USE_TZ:
        return False
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    return is_psycopg3


def _pg_columns() -> list[Any]:
    """``_COLUMNS`` as the raw reader selects them: each in a form whose binary value loads
    in C straight to what the record needs.

    ``id`` as UUID text (``str(uuid)`` is the same text); ``timestamp`` as UTC wall time
    (naive: Django's own timestamptz loader is Python code); inet columns through
    ``abbrev``, which is ``inet_out`` (the text Django reads, not ``ipaddress`` objects).
    """
    from django.db.models import DateTimeField, F, Func, TextField
    from django.db.models.functions import Cast

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
    from django.core.exceptions import EmptyResultSet
    from django.db import connections, transaction

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
    from tracking.activity_types import type_label
    from tracking.models import Activity

    chunk_size = chunk_size or CHUNK_SIZE
    payloads = payloads or PayloadCache()
    table = Activity._meta.db_table
    headers_aad = f"{table}.headers."
    params_aad = f"{table}.params."
    i_id, i_ts, i_user, i_tags = _I["id"], _I["timestamp"], _I["user"], _I["tags"]
    i_headers, i_params, i_type = _I["headers"], _I["params"], _I["type"]
    floats = tuple(_I[n] for n, kind in _field_kinds().items() if kind == "FloatField")
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


# CSV cell encoders per column, in EXPORT_FIELDS order (see csv_cells for the rules).
_TEXT, _BOOL, _NUMBER, _FLOAT, _TAGS, _PAYLOAD, _FINDINGS, _ANY, _REPEATED = range(9)
# Text columns with few distinct values that often need quoting (user agents hold
# "(KHTML, like Gecko)", proxy chains "a, b"): their fields are memoised.
_REPEATED_COLUMNS = frozenset({"user_agent", "forwarded_for"})
_TRIGGERS = "".join(CSV_TRIGGERS)
assert all(len(t) == 1 for t in CSV_TRIGGERS)  # one-character triggers: a set test suffices


def _cell_kinds() -> tuple[int, ...]:
    kinds = _field_kinds()
    by_type = {
        "BooleanField": _BOOL,
        "FloatField": _FLOAT,
        "CharField": _TEXT,
        "TextField": _TEXT,
        "GenericIPAddressField": _TEXT,
        "IntegerField": _NUMBER,
        "PositiveIntegerField": _NUMBER,
        "PositiveSmallIntegerField": _NUMBER,
        "SmallIntegerField": _NUMBER,
        "BigIntegerField": _NUMBER,
        "PositiveBigIntegerField": _NUMBER,
    }
    out = []
    for name in EXPORT_FIELDS:
        if name in ("id", "timestamp", "type_display"):
            out.append(_TEXT)
        elif name == "tags":
            out.append(_TAGS)
        elif name in ("headers", "params"):
            out.append(_PAYLOAD)
        elif name == "findings":
            out.append(_FINDINGS)
        elif name == "user":  # its id; a non-integer id takes the generic rules there
            out.append(_NUMBER)
        elif name in _REPEATED_COLUMNS and kinds.get(name) in ("CharField", "TextField"):
            out.append(_REPEATED)
        else:  # model columns by type; anything unusual takes the generic rules
            out.append(by_type.get(kinds.get(name, ""), _ANY))
    return tuple(out)


_GROUPS: dict[int, tuple[int, ...]] | None = None


def _groups() -> dict[int, tuple[int, ...]]:
    global _GROUPS
    if _GROUPS is None:
        kinds = _cell_kinds()
        _GROUPS = {k: tuple(i for i, kind in enumerate(kinds) if kind == k) for k in range(9)}
    return _GROUPS


def _cells(values: list[Any], payloads: PayloadCache | None = None) -> list[str]:
    """The CSV fields of a value list in ``EXPORT_FIELDS`` order, rewritten in place:
    ``csv_cells``' text, quoted as ``csv.writer`` (excel dialect) quotes it, ready to be
    joined with ``","``. Columns are handled by known type, so a cell costs a check, not a
    dispatch; quoting costs one scan of the row (``_quoted_where_needed``)."""
    groups = _GROUPS or _groups()
    triggers = _TRIGGERS
    for i in groups[_TEXT]:
        v = values[i]
        if v is None:
            values[i] = ""
            continue
        if type(v) is not str:
            v = values[i] = _generic(v)
        if v and v[0] in triggers:
            values[i] = "'" + v
    for i in groups[_NUMBER]:
        v = values[i]
        if v is None:
            values[i] = ""
        elif type(v) is not int:
            values[i] = neutralise(_generic(v))
        else:
            values[i] = "'" + str(v) if v < 0 else str(v)
    for i in groups[_FLOAT]:
        v = values[i]
        if v is None:
            values[i] = ""
        elif type(v) is not float:
            values[i] = neutralise(_generic(v))
        else:
            text = repr(v)
            # negative, or -0.0 (written "-0.0")
            values[i] = "'" + text if text[0] == "-" else text
    for i in groups[_BOOL]:
        v = values[i]
        if v is None:
            values[i] = ""
        else:
            values[i] = ("true" if v else "false") if type(v) is bool else neutralise(_generic(v))
    for i in groups[_TAGS]:
        v = values[i]
        if v is None:
            values[i] = ""
        else:
            text = ";".join(v)
            values[i] = "'" + text if text and text[0] in triggers else text
    for i in groups[_PAYLOAD]:
        v = values[i]
        values[i] = payloads.field(v) if payloads else _csv_field(_json_cell(v))
    for i in groups[_FINDINGS]:
        v = values[i]
        if v is None:
            values[i] = ""
        else:
            values[i] = "[]" if not v else _csv_field(_json_cell(v))
    for i in groups[_ANY]:
        v = values[i]
        values[i] = "" if v is None else neutralise(_generic(v))
    for i in groups[_REPEATED]:
        v = values[i]
        if v is None:
            values[i] = ""
        else:
            values[i] = (
                _repeated_field(v) if type(v) is str else _csv_field(neutralise(_generic(v)))
            )
    _quoted_where_needed(values)
    return values


def _csv_field(text: str) -> str:
    """``text`` as csv.writer writes it: quoted, inner quotes doubled, where needed (the
    excel dialect quotes a field holding the delimiter, the quote or a line-end character)."""
    if "," in text or '"' in text or "\n" in text or "\r" in text:
        return '"' + text.replace('"', '""') + '"'
    return text


@functools.lru_cache(maxsize=4096)
def _repeated_field(text: str) -> str:
    return _csv_field(neutralise(text))


_PROBED: Any = None


def _quoted_where_needed(fields: list[str]) -> None:
    """Quote the plain fields (all but payloads, findings and _REPEATED, quoted already)
    that need it.

    One joined probe of a row's plain fields tells whether any needs quoting, which almost
    never happens; only then is each field looked at.
    """
    global _PROBED
    if _PROBED is None:
        groups = _GROUPS or _groups()
        quoted = set(groups[_PAYLOAD]) | set(groups[_FINDINGS]) | set(groups[_REPEATED])
        _PROBED = tuple(i for i in range(len(EXPORT_FIELDS)) if i not in quoted)
    probe = "\x00".join([fields[i] for i in _PROBED])
    if "," in probe or '"' in probe or "\n" in probe or "\r" in probe:
        for i in _PROBED:
            fields[i] = _csv_field(fields[i])


def _generic(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _json_cell(value: Any) -> str:
    return neutralise(json.dumps(value, ensure_ascii=False, sort_keys=True))


def _csv_chunks(
    rows: Iterable[list[Any]],
    payloads: PayloadCache | None = None,
    every: int = 500,
    *,
    header: bool = True,
) -> Iterator[str]:
    """CSV text of value lists, ``every`` rows a chunk. Lines are joined here rather than
    by csv.writer, which copies each character through its quoting checks (the larger part
    of the CSV cost); the text is the same (tests compare it with csv.writer's)."""
    if header:
        yield csv_header()
    batch: list[str] = []
    for values in rows:
        batch.append(",".join(_cells(values, payloads)))
        if len(batch) >= every:
            batch.append("")
            yield "\r\n".join(batch)
            batch.clear()
    if batch:
        batch.append("")
        yield "\r\n".join(batch)


def _csv_line(cells: list[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf).writerow(cells)
    return buf.getvalue()


def encode_values(
    rows: Iterable[list[Any]], fmt: str, *, payloads: PayloadCache | None = None
) -> Iterator[str]:
    """Encode value lists (``iter_values``; pass the same ``payloads``) as ``fmt`` text."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r} (choose from {', '.join(FORMATS)})")
    if fmt == "csv":
        return _csv_chunks(rows, payloads)
    return encode_records((dict(zip(EXPORT_FIELDS, v, strict=True)) for v in rows), fmt)


def csv_header() -> str:
    """The header line of a CSV export."""
    return _csv_line(list(EXPORT_FIELDS))


def encode_piece(
    rows: Iterable[list[Any]], fmt: str, *, payloads: PayloadCache | None = None
) -> tuple[str, int]:
    """(text, rows) of value lists in the middle of an export, for a parallel export to
    concatenate: CSV lines without the header, NDJSON lines, or JSON records joined by
    ``",\n"`` without the brackets (``encode_values``' text is ``"[\n"``, the non-empty
    pieces joined by ``",\n"``, then ``"\n]\n"``, or ``"[\n]\n"`` when all are empty)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r} (choose from {', '.join(FORMATS)})")
    counted = 0

    def counting() -> Iterator[list[Any]]:
        nonlocal counted
        for values in rows:
            counted += 1
            yield values

    if fmt == "csv":
        text = "".join(_csv_chunks(counting(), payloads, header=False))
    else:
        dumps = json.dumps
        records = (dict(zip(EXPORT_FIELDS, v, strict=True)) for v in counting())
        if fmt == "ndjson":
            text = "".join([dumps(r, ensure_ascii=True) + "\n" for r in records])
        else:
            text = ",\n".join([dumps(r, ensure_ascii=True) for r in records])
    return text, counted


def encode_records(records: Iterable[dict[str, Any]], fmt: str) -> Iterator[str]:
    """Encode records (already JSON-form) as ``fmt`` text chunks."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r} (choose from {', '.join(FORMATS)})")
    if fmt == "csv":
        yield from _csv_chunks([r.get(n) for n in EXPORT_FIELDS] for r in records)
    elif fmt == "ndjson":
        for record in records:
            yield json.dumps(record, ensure_ascii=True) + "\n"
    else:
        yield "["
        first = True
        for record in records:
            yield ("\n" if first else ",\n") + json.dumps(record, ensure_ascii=True)
            first = False
        yield "\n]\n"


def stream_export(queryset: Any, fmt: str, *, chunk_size: int | None = None) -> Iterator[str]:
    """Text chunks of ``queryset`` exported as ``fmt`` (csv | json | ndjson), lazily.

    Raises ``ValueError`` for an unknown format before reading anything.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r} (choose from {', '.join(FORMATS)})")
    payloads = PayloadCache()
    return encode_values(
        iter_values(queryset, chunk_size, payloads=payloads), fmt, payloads=payloads
    )
