"""Export records and formats shared by the API export, the ``tracking export`` CLI and import.

Framework-free on purpose (no request): give ``stream_export`` any Activity queryset and a
format and it yields text chunks, reading the rows with ``QuerySet.iterator`` so memory stays
constant however many rows are exported.

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

import csv
import io
import json
import logging
import math
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

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

CHUNK_SIZE = 1000


def _iso(ts: datetime) -> str:
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).isoformat()


def decrypted_field(activity: Any, name: str) -> Any:
    from .crypto import DecryptionError

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
        from . import redaction
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


def iter_records(queryset: Any, chunk_size: int = CHUNK_SIZE) -> Iterator[dict[str, Any]]:
    """Records of ``queryset`` read lazily in chunks (findings prefetched per chunk)."""
    for activity in queryset.prefetch_related("findings").iterator(chunk_size=chunk_size):
        yield activity_record(activity)


def _csv_line(cells: list[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf).writerow(cells)
    return buf.getvalue()


def encode_records(records: Iterable[dict[str, Any]], fmt: str) -> Iterator[str]:
    """Encode records (already JSON-form) as ``fmt`` text chunks."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r} (choose from {', '.join(FORMATS)})")
    if fmt == "csv":
        yield _csv_line(list(EXPORT_FIELDS))
        for record in records:
            yield _csv_line(csv_cells(record))
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


def stream_export(queryset: Any, fmt: str, *, chunk_size: int = CHUNK_SIZE) -> Iterator[str]:
    """Text chunks of ``queryset`` exported as ``fmt`` (csv | json | ndjson), lazily.

    Raises ``ValueError`` for an unknown format before reading anything.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r} (choose from {', '.join(FORMATS)})")
    return encode_records(iter_records(queryset, chunk_size), fmt)
