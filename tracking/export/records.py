"""Export formats shared by the API export, the ``tracking export`` CLI and import.

Framework-free on purpose (no request): give ``stream_export`` any Activity queryset and a
format and it yields text chunks, reading the rows in chunks (``tracking.export.values``) so
memory stays constant however many rows are exported. The command can also split the
export over processes (``tracking.export.parallel``).

The record is ``tracking.export.record.activity_record``. Encodings:

* ``json``: one JSON array; ``ndjson``: one object per line. ``ensure_ascii`` escapes every
  control and non-ASCII character, so the output is valid JSON for any stored content.
* ``csv``: a header row, then one row per activity (``tracking.export.csvformat``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from tracking.export.csvformat import _csv_chunks
from tracking.export.record import EXPORT_FIELDS, FORMATS
from tracking.export.values import PayloadCache, iter_values


def encode_values(
    rows: Iterable[list[Any]], fmt: str, *, payloads: PayloadCache | None = None
) -> Iterator[str]:
    """Encode value lists (``iter_values``; pass the same ``payloads``) as ``fmt`` text."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r} (choose from {', '.join(FORMATS)})")
    if fmt == "csv":
        return _csv_chunks(rows, payloads)
    return encode_records((dict(zip(EXPORT_FIELDS, v, strict=True)) for v in rows), fmt)


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
