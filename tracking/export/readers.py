"""Readers of export files for ``tracking import``: NDJSON lines, a JSON array, CSV rows.

Each yields ``(line number, record or BadRecord)``: a line that cannot be parsed is reported
with its reason and the rest is read. Files are read incrementally (a JSON array with
``JSONDecoder.raw_decode`` over chunks), so memory does not grow with the file; ``.gz``
files are decompressed on the fly and ``-`` is standard input (``open_text``).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import sys
from collections.abc import Iterator
from typing import IO, Any

from tracking.events import BadRecord
from tracking.export.csvformat import record_from_csv_row

FORMATS = ("ndjson", "json", "csv")
EXTENSIONS = {".ndjson": "ndjson", ".jsonl": "ndjson", ".json": "json", ".csv": "csv"}
JSON_CHUNK = 1 << 16
MAX_JSON_ELEMENT = 1 << 22  # a single array element larger than this is reported as bad


def detect_format(path: str) -> str | None:
    name = path.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    return EXTENSIONS.get(os.path.splitext(name)[1])


class _CountingReader(io.RawIOBase):
    """Counts bytes read from the underlying binary stream (for the progress percentage)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.raw.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.count += n
        return n


def open_text(path: str) -> tuple[IO[str], _CountingReader, int | None]:
    """A text stream over ``path`` (``-`` = stdin), its byte counter and its size if known."""
    if path == "-":
        raw: IO[bytes] = sys.stdin.buffer
        size = None
    else:
        raw = open(path, "rb")  # noqa: SIM115 - closed by the caller through the wrapper
        size = os.fstat(raw.fileno()).st_size
    counter = _CountingReader(raw)
    binary: IO[bytes] = io.BufferedReader(counter, buffer_size=JSON_CHUNK)
    if path.lower().endswith(".gz"):
        binary = gzip.GzipFile(fileobj=binary)  # type: ignore[assignment]
    # surrogateescape: a line with invalid UTF-8 is reported as a bad line, not fatal.
    text = io.TextIOWrapper(binary, encoding="utf-8-sig", errors="surrogateescape", newline="")
    return text, counter, size


def _check_utf8(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRecord("invalid UTF-8") from None


def read_ndjson(stream: IO[str]) -> Iterator[tuple[int, Any]]:
    """``(line number, record or BadRecord)`` for each non-blank line."""
    for number, line in enumerate(stream, 1):
        if not line.strip():
            continue
        try:
            _check_utf8(line)
            yield number, json.loads(line)
        except BadRecord as exc:
            yield number, exc
        except json.JSONDecodeError as exc:
            yield number, BadRecord(f"invalid JSON ({exc.msg} at column {exc.colno})")


def read_json_array(stream: IO[str]) -> Iterator[tuple[int, Any]]:
    """Elements of a top-level JSON array, streamed; line numbers are where elements start.

    A malformed element is reported and skipped up to the end of its line (our export writes
    one element per line), so one bad element does not lose the rest of the array.
    """
    decoder = json.JSONDecoder()
    buf, pos, eof = "", 0, False
    line_base, counted_to = 1, 0  # line number at buf[counted_to]

    def fill() -> bool:
        nonlocal buf, pos, eof, line_base, counted_to
        chunk = stream.read(JSON_CHUNK)
        if not chunk:
            eof = True
            return False
        if pos > JSON_CHUNK:
            line_base += buf.count("\n", counted_to, pos)
            buf, counted_to, pos = buf[pos:], 0, 0
        buf += chunk
        return True

    def skip_ws() -> None:
        nonlocal pos
        while True:
            while pos < len(buf) and buf[pos] in " \t\r\n":
                pos += 1
            if pos < len(buf) or eof or not fill():
                return

    def line_at(index: int) -> int:
        nonlocal line_base, counted_to
        line_base += buf.count("\n", counted_to, index)
        counted_to = index
        return line_base

    skip_ws()
    if pos >= len(buf):
        return
    if buf[pos] != "[":
        raise BadRecord(f"line {line_at(pos)}: a JSON file must hold one array of records")
    pos += 1
    while True:
        skip_ws()
        if pos >= len(buf):
            yield line_at(pos), BadRecord("the JSON array is not closed (truncated file?)")
            return
        if buf[pos] == "]":
            return
        if buf[pos] == ",":
            pos += 1
            continue
        number = line_at(pos)
        error: json.JSONDecodeError | None = None
        while True:
            try:
                value, end = decoder.raw_decode(buf, pos)
                break
            except json.JSONDecodeError as exc:
                # Maybe the element is only cut by the chunk boundary: read on (bounded).
                if not eof and len(buf) - pos < MAX_JSON_ELEMENT and fill():
                    continue
                error = exc
                break
        if error is not None:
            yield number, BadRecord(f"invalid JSON ({error.msg})")
            nl = buf.find("\n", pos)
            while nl < 0 and not eof and fill():
                nl = buf.find("\n", pos)
            pos = len(buf) if nl < 0 else nl + 1
            continue
        try:
            _check_utf8(buf[pos:end])
        except BadRecord as exc:
            value = exc
        pos = end
        yield number, value


def read_csv(stream: IO[str]) -> Iterator[tuple[int, Any]]:
    reader = csv.DictReader(stream)
    if reader.fieldnames is None:
        return
    missing = {"timestamp", "type"} - set(reader.fieldnames)
    if missing:
        raise BadRecord(f"line 1: CSV header lacks column(s) {', '.join(sorted(missing))}")
    start = reader.line_num + 1
    for row in reader:
        number, start = start, reader.line_num + 1
        if None in row:
            yield number, BadRecord("more cells than header columns")
            continue
        try:
            for cell in row.values():
                if cell:
                    _check_utf8(cell)
            yield number, record_from_csv_row(row)
        except BadRecord as exc:
            yield number, exc
        except ValueError as exc:
            yield number, BadRecord(str(exc))


READERS = {"ndjson": read_ndjson, "json": read_json_array, "csv": read_csv}
