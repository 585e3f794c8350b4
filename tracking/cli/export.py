"""``tracking export [--format ndjson|json|csv] [--flagged] [--since/--until] [-o PATH]``.

Streams the same records as the API export (``tracking.export.records.stream_export``: every
Activity field, ``tags``, ``flagged`` and ``findings`` included), oldest first, to standard
output or a file. Rows are read in chunks, so memory stays flat for any number of rows.
What it writes, ``tracking import`` reads back.

On PostgreSQL the rows are read through a binary cursor, and ``--workers N`` (default: one
per CPU) encodes them in N processes (``tracking.export.parallel``); the bytes written are
the same as with ``--workers 1``.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import os
import tempfile
from collections.abc import Iterator
from datetime import datetime
from datetime import timezone as dt_timezone

from django.db.models import QuerySet

from tracking.cli.verify import parse_when
from tracking.export import parallel as export_parallel
from tracking.export.csvformat import csv_header
from tracking.export.parallel import pieces
from tracking.export.records import encode_values
from tracking.export.values import PayloadCache, iter_values
from tracking.models import Activity

UTC = dt_timezone.utc

help = "Export activities as NDJSON, JSON or CSV (the API export's records) to stdout or a file."

FORMATS = ("ndjson", "json", "csv")
EXTENSIONS = {".ndjson": "ndjson", ".jsonl": "ndjson", ".json": "json", ".csv": "csv"}


def add_arguments(parser) -> None:
    parser.add_argument(
        "--format", choices=FORMATS, default=None, help="default: from -o's extension, else ndjson"
    )
    parser.add_argument("--flagged", action="store_true", help="only flagged activities")
    parser.add_argument(
        "--since",
        type=parse_when,
        default=None,
        help="at or after this ISO date/time (UTC if naive)",
    )
    parser.add_argument(
        "--until", type=parse_when, default=None, help="before this ISO date/time (UTC if naive)"
    )
    parser.add_argument(
        "--type",
        dest="types",
        action="append",
        default=None,
        help="only this activity type (repeatable)",
    )
    parser.add_argument("--username", default=None, help="only this username")
    parser.add_argument(
        "--tag",
        dest="tags",
        action="append",
        default=None,
        help="only activities with this tag (repeatable: any)",
    )
    parser.add_argument(
        "-o", "--output", default=None, help="file to write (.gz compresses); default stdout"
    )
    parser.add_argument(
        "--workers",
        type=_workers,
        default=None,
        help="processes encoding in parallel on PostgreSQL (default: one per CPU; 1: serial)",
    )


def _workers(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of workers")
    return value


def queryset(
    *,
    flagged: bool = False,
    since: datetime | None = None,
    until: datetime | None = None,
    types: list[str] | None = None,
    username: str | None = None,
    tags: list[str] | None = None,
) -> QuerySet:
    qs = Activity.objects.all()
    if flagged:
        qs = qs.filter(flagged=True)
    if since is not None:
        qs = qs.filter(timestamp__gte=since)
    if until is not None:
        qs = qs.filter(timestamp__lt=until)
    if types:
        qs = qs.filter(type__in=types)
    if username:
        qs = qs.filter(username=username)
    if tags:
        qs = qs.with_tags(tags)
    return qs.order_by("timestamp", "id")


def _format_for(output: str | None) -> str:
    if not output or output == "-":
        return "ndjson"
    name = output.lower().removesuffix(".gz")
    return EXTENSIONS.get(os.path.splitext(name)[1], "ndjson")


def handle(
    command,
    *,
    format: str | None = None,
    flagged: bool = False,
    since=None,
    until=None,
    types=None,
    username=None,
    tags=None,
    output: str | None = None,
    workers: int | None = None,
    **options,
) -> int:
    if since is not None and until is not None and since >= until:
        command.stderr.write("--since must be before --until")
        return 2
    fmt = format or _format_for(output)
    qs = queryset(
        flagged=flagged, since=since, until=until, types=types, username=username, tags=tags
    )
    counted = [0]
    workers = workers or os.cpu_count() or 1
    if export_parallel.applies(qs, workers):
        chunks = _parallel_chunks(qs, fmt, workers, counted)
    else:
        chunks = _serial_chunks(qs, fmt, counted)
    if not output or output == "-":
        for chunk in chunks:
            command.stdout.write(chunk, ending="")
        command.stdout.flush()
        command.stderr.write(f"exported {counted[0]} activities")
        return 0
    # Write next to the target and rename, so a failed export never leaves half a file.
    folder = os.path.dirname(os.path.abspath(output))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".export-", suffix=".tmp", dir=folder)
        os.close(fd)
    except OSError as exc:
        command.stderr.write(f"cannot write {output}: {exc.strerror or exc}")
        return 2
    opener = gzip.open if output.lower().endswith(".gz") else open
    try:
        with opener(tmp, "wt", encoding="utf-8", newline="") as fh:
            for chunk in chunks:
                fh.write(chunk)
        os.replace(tmp, output)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    command.stderr.write(f"exported {counted[0]} activities to {output}")
    return 0


def _serial_chunks(qs: QuerySet, fmt: str, counted: list[int]) -> Iterator[str]:
    # One cache for reading and encoding: CSV reuses the JSON text of repeated payloads.
    payloads = PayloadCache()

    def rows():
        # Value lists, not dicts: the CSV path never builds a record per row.
        for values in iter_values(qs, payloads=payloads, raw=True):
            counted[0] += 1
            yield values

    return encode_values(rows(), fmt, payloads=payloads)


def _parallel_chunks(qs: QuerySet, fmt: str, workers: int, counted: list[int]) -> Iterator[str]:
    """``_serial_chunks``' text, encoded by ``workers`` processes (``tracking.export.parallel``)."""

    if fmt == "csv":
        yield csv_header()
    elif fmt == "json":
        yield "["
    separator = "\n"  # JSON: before the first record, then between pieces
    for text, rows in pieces(qs, fmt, workers=workers):
        counted[0] += rows
        if not text:
            continue
        if fmt == "json":
            yield separator
            separator = ",\n"
        yield text
    if fmt == "json":
        yield "\n]\n"
