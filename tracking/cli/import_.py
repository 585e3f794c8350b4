"""``tracking import PATH [--format ndjson|json|csv]``: load activities from a file.

Reads what ``tracking export`` writes (every field of the record, see
``tracking.export.records``) and minimal records (``timestamp``, ``type``, ``ip_address``,
``endpoint``, ``method``, ``status`` and optionally ``id``, ``username``, ``user_agent``,
``session_id``, ``duration``, ``headers``, ``params``, ``outcome``: ``success`` or
``failure``; without it a status >= 400 means failure). Unknown keys (e.g. the simulator's
``label``) are ignored. Every record goes through the same batch step as live traffic
(``ActivityTracker.record_many`` → ``tracking.pipeline.ingest``): enrichment (fields an export already
carries are kept), redaction, encryption and detection.

Behaviour worth knowing:

* **Streaming.** Files are read incrementally (JSON arrays with ``JSONDecoder.raw_decode``
  over chunks), so memory is bounded by ``--sort-window`` + ``--batch-size`` records whatever
  the file size. ``.gz`` files are decompressed on the fly; ``-`` reads standard input.
* **Order.** Records are stored in timestamp order within a sliding window of
  ``--sort-window`` records (default 10,000): files that are roughly sorted (logs usually
  are) come out sorted. A record more than a window out of place is still imported, just
  later than its neighbours; the summary counts such ``late`` records.
* **Idempotence.** A given ``id`` is kept and ids already stored are skipped, so re-running
  an import adds nothing. A record without ``id`` gets a deterministic id derived from its
  content (UUIDv5), so re-importing a minimal file is idempotent too.
* **Users.** ``username`` is matched to an existing user; otherwise only the snapshot is kept.
  The ``user`` primary key of an export is *not* trusted (another database's keys).
* **Sessions.** ``session_id`` is stored as the keyed hash (``integrity.hash_session_key``)
  unless it already is one (64 lowercase hex digits, as our export writes it).
* **Verdicts.** A record of our own export (it carries ``findings``) is a record of what was
  decided when it was written: importing it *restores* that verdict (``flagged``, ``tags``,
  ``risk_score``, ``severity``, ``review_status`` and the findings) while user profiles
  still learn from it, so export → import → export gives identical records and a restore
  never rewrites history. ``--redetect`` judges such records again instead (the new
  verdict is merged: tags union, flagged OR, risk max). Records without ``findings`` (minimal
  records, other tools' logs, the simulator) always go through full detection, merged with
  any verdict fields they carry.
* **Bad lines** are reported on stderr as ``line N: <reason>`` and the rest is imported.
  Exit code 0 when anything was imported or already present (or the file was empty),
  1 when every record was bad, 2 when the file cannot be read at all.
* **Progress** goes to stderr every ``--progress-every`` records, with a percentage when
  the size of the input is known.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import gzip
import heapq
import io
import json
import os
import re
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from datetime import timezone as dt_timezone
from typing import IO, TYPE_CHECKING, Any

from tracking.compat import parse_iso_datetime
from tracking.outcome import clean as clean_outcome

if TYPE_CHECKING:
    from tracking.events import Event

UTC = dt_timezone.utc

help = "Import activities from an NDJSON, JSON or CSV file (what `tracking export` writes)."

FORMATS = ("ndjson", "json", "csv")
EXTENSIONS = {".ndjson": "ndjson", ".jsonl": "ndjson", ".json": "json", ".csv": "csv"}
# Namespace of the content-derived ids of records that come without one.
ID_NAMESPACE = uuid.UUID("7d7f9d2e-3c55-4c1b-9f40-4b7e8d7b1a10")
SESSION_HASH = re.compile(r"[0-9a-f]{64}")
UNIX_TIME = re.compile(r"\d{9,11}(\.\d+)?")
ENRICHMENT_KEYS = (
    "isp", "asn", "country", "region", "city", "latitude", "longitude", "accuracy_radius",
    "device", "os", "browser", "is_mobile", "is_bot",
)  # fmt: skip
VERDICT_KEYS = ("flagged", "tags", "risk_score", "severity", "review_status")
TEXT_KEYS = ("username", "user_agent", "endpoint", "method", "forwarded_for")
JSON_CHUNK = 1 << 16
MAX_JSON_ELEMENT = 1 << 22  # a single array element larger than this is reported as bad
MAX_REPORTED = 1000  # bad lines printed individually; the rest are only counted


class BadRecord(ValueError):
    """A record that cannot be imported; the message is the reason shown to the operator."""


@dataclass
class Summary:
    imported: int = 0
    present: int = 0
    bad: int = 0
    late: int = 0
    lines: int = 0
    reported: int = 0
    errors: list[str] = field(default_factory=list)


def add_arguments(parser) -> None:
    parser.add_argument(
        "path", help="file to read (.ndjson/.jsonl, .json, .csv, optionally .gz); - for stdin"
    )
    parser.add_argument(
        "--format", choices=FORMATS, default=None, help="default: from the file extension"
    )
    parser.add_argument(
        "--batch-size",
        type=_positive,
        default=None,
        help="events per ingest batch (default TRACKING_BATCH_SIZE)",
    )
    parser.add_argument(
        "--sort-window",
        type=_positive,
        default=10000,
        help="records sorted by timestamp at a time (default 10000)",
    )
    parser.add_argument(
        "--progress-every",
        type=_positive,
        default=10000,
        help="report progress on stderr every N records",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.add_argument(
        "--redetect",
        action="store_true",
        help="run detection again on exported records (default: restore their recorded verdict)",
    )


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def detect_format(path: str) -> str | None:
    name = path.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    return EXTENSIONS.get(os.path.splitext(name)[1])


# -- reading ------------------------------------------------------------------------------


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
    from tracking.export.records import record_from_csv_row

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


# -- records → events ---------------------------------------------------------------------


def _parse_timestamp(value: Any) -> datetime:
    if isinstance(value, str) and UNIX_TIME.fullmatch(value.strip()):
        value = float(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        # Unix time (seconds), as many log shippers write it.
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            raise BadRecord(f"timestamp {value!r} is out of range") from None
    if not isinstance(value, str) or not value:
        raise BadRecord(
            "missing timestamp" if value in (None, "") else f"timestamp {value!r} is not text"
        )
    try:
        ts = parse_iso_datetime(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadRecord(f"timestamp {value!r} is not ISO-8601") from None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC)


def _optional_number(record: dict, key: str, *, integer: bool = False) -> Any:
    value = record.get(key)
    if value in (None, ""):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise BadRecord(f"{key} {value!r} is not a number")
    try:
        number = float(value)
    except ValueError:
        raise BadRecord(f"{key} {value!r} is not a number") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise BadRecord(f"{key} {value!r} is not finite")
    if integer:
        if number != int(number):
            raise BadRecord(f"{key} {value!r} is not a whole number")
        return int(number)
    return number


def _mapping(record: dict, key: str) -> dict:
    value = record.get(key)
    if value in (None, ""):
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise BadRecord(f"{key} is not a JSON object") from None
    if not isinstance(value, dict):
        raise BadRecord(f"{key} must be an object, not {type(value).__name__}")
    return value


def _ip(record: dict, key: str) -> str | None:
    import ipaddress

    value = record.get(key)
    if value in (None, ""):
        return None
    try:
        return str(ipaddress.ip_address(str(value).strip()))
    except ValueError:
        raise BadRecord(f"{key} {value!r} is not an IP address") from None


def _type_code(kind: str) -> str:
    """A known type in any letter case becomes its code ("auth" -> "AUTH")."""
    from tracking.activity_types import all_types

    known = all_types()
    if kind in known:
        return kind
    upper = kind.upper()
    return upper if upper in known else kind


def _content_id(record: dict) -> str:
    doc = json.dumps(record, sort_keys=True, default=str, separators=(",", ":"))
    return str(uuid.uuid5(ID_NAMESPACE, doc))


def event_from_record(record: Any) -> Event:
    """An ``Event`` for one import record; raises ``BadRecord`` with the reason."""
    from tracking.events import Event
    from tracking.integrity import macs as integrity

    if not isinstance(record, dict):
        raise BadRecord(f"a record must be an object, not {type(record).__name__}")
    kind = record.get("type")
    if not isinstance(kind, str) or not kind.strip():
        raise BadRecord("missing type")
    if len(kind) > 32:
        raise BadRecord(f"type {kind[:40]!r}... is longer than 32 characters")
    kind = _type_code(kind.strip())
    timestamp = _parse_timestamp(record.get("timestamp"))
    if record.get("id") in (None, ""):
        ident = _content_id({k: v for k, v in record.items() if k not in ("label", "label_detail")})
    else:
        try:
            ident = str(uuid.UUID(str(record["id"])))
        except ValueError:
            raise BadRecord(f"id {record['id']!r} is not a UUID") from None
    status = _optional_number(record, "status", integer=True)
    if status is not None and not 0 <= status <= 999:
        raise BadRecord(f"status {status} is not an HTTP status")
    duration = _optional_number(record, "duration")
    if duration is not None and duration < 0:
        raise BadRecord(f"duration {duration} is negative")
    texts = {}
    for key in TEXT_KEYS:
        value = record.get(key)
        if value is not None and not isinstance(value, str | int | float):
            raise BadRecord(f"{key} must be text")
        texts[key] = "" if value is None else str(value)
    session = record.get("session_id")
    session = "" if session in (None, "") else str(session)
    if session and not SESSION_HASH.fullmatch(session):
        session = integrity.hash_session_key(session)
    enrichment = {k: record[k] for k in ENRICHMENT_KEYS if k in record}
    for key in ("latitude", "longitude"):
        if key in enrichment:
            enrichment[key] = _optional_number(record, key)
    for key in ("asn", "accuracy_radius"):
        if key in enrichment:
            enrichment[key] = _optional_number(record, key, integer=True)
    verdict = {k: record[k] for k in VERDICT_KEYS if k in record and record[k] is not None}
    if "tags" in verdict:
        tags = verdict["tags"]
        if isinstance(tags, str):
            tags = [t for t in re.split(r"[;,]", tags) if t]
        if not isinstance(tags, list):
            raise BadRecord("tags must be a list")
        verdict["tags"] = [str(t) for t in tags]
    if "risk_score" in verdict:
        verdict["risk_score"] = _optional_number(record, "risk_score")
    try:
        # Files without it: the status decides in ingest (>= 400 is a failure).
        outcome = clean_outcome(record.get("outcome"))
    except ValueError as exc:
        raise BadRecord(str(exc)) from None
    return Event(
        type=kind,
        timestamp=timestamp,
        id=ident,
        username=texts["username"],
        session_id=session,
        ip_address=_ip(record, "ip_address"),
        remote_addr=_ip(record, "remote_addr"),
        forwarded_for=texts["forwarded_for"],
        user_agent=texts["user_agent"],
        endpoint=texts["endpoint"],
        method=texts["method"],
        status=status,
        outcome=outcome,
        duration=duration,
        headers=_mapping(record, "headers"),
        params=_mapping(record, "params"),
        enrichment=enrichment,
        verdict=verdict,
    )


def _findings(record: dict) -> list[dict] | None:
    """The recorded findings of an exported record; None when the record has no verdict."""
    items = record.get("findings")
    if not isinstance(items, list):
        return None
    return [f for f in items if isinstance(f, dict) and f.get("detector") and f.get("tag")]


@contextlib.contextmanager
def learn_only() -> Iterator[None]:
    """Ingest with no detector and no rule: profiles still learn, no new verdict is made.

    Used to restore exported records with the verdict they were written with. Settings are
    overridden for the duration (a management command is single-threaded); the tracking
    caches reload on ``setting_changed`` like for any settings change.
    """
    from django.test.utils import override_settings

    with override_settings(
        TRACKING_DETECTORS=[], TRACKING_BUILTIN_RULES=False, TRACKING_RULE_DIRS=[]
    ):
        yield


# -- the import loop -----------------------------------------------------------------------


class _Importer:
    def __init__(
        self, command, summary: Summary, batch_size: int, quiet: bool, redetect: bool = False
    ) -> None:
        from tracking.capture.tracker import get_tracker

        self.command = command
        self.summary = summary
        self.batch_size = batch_size
        self.quiet = quiet
        self.tracker = get_tracker()
        self.batch: list[tuple[int, Any, list[dict]]] = []
        self.redetect = redetect
        self.restoring = False
        self._learning: contextlib.ExitStack | None = None

    def close(self) -> None:
        if self._learning is not None:
            self._learning.close()
            self._learning = None

    def bad(self, number: int, reason: str) -> None:
        self.summary.bad += 1
        if self.summary.reported < MAX_REPORTED:
            self.summary.reported += 1
            self.command.stderr.write(f"line {number}: {reason}")
        elif self.summary.reported == MAX_REPORTED:
            self.summary.reported += 1
            self.command.stderr.write("... further bad lines are counted but not listed")

    def add(self, number: int, event, findings: list[dict] | None) -> None:
        restore = findings is not None and not self.redetect
        if self.batch and restore != self.restoring:
            self.flush()  # keep order: a batch is either restored or judged
        self.restoring = restore
        self.batch.append((number, event, findings or []))
        if len(self.batch) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        if not self.batch:
            return
        batch, self.batch = self.batch, []
        events = [e for _, e, _ in batch]
        # Restored batches run with detection switched off; the switch stays on across
        # consecutive restored batches (settings churn reloads the detection pipeline).
        if self.restoring and self._learning is None:
            self._learning = contextlib.ExitStack()
            self._learning.enter_context(learn_only())
        elif not self.restoring:
            self.close()
        result = self.tracker.record_many(events, batch_size=len(batch))
        self.summary.imported += result.stored
        self.summary.present += result.duplicates
        if result.rejected_ids or result.spooled:
            lines = {e.id: n for n, e, _ in batch}
            reasons = result.errors if len(result.errors) == len(result.rejected_ids) else []
            for i, ident in enumerate(result.rejected_ids):
                self.bad(lines.get(ident, 0), reasons[i] if reasons else "rejected by the writer")
            if result.spooled:
                self.command.stderr.write(
                    f"{result.spooled} record(s) kept in the spool: the database was unavailable "
                    "(`tracking` replays the spool; re-run the import later to be sure)"
                )
        stored = set(result.ids)
        keep = [(e, f) for _, e, f in batch if f and e.id in stored]
        if keep:
            _restore_findings(keep)


def _restore_findings(pairs: list) -> None:
    """Keep an export's findings on re-import (detection may not re-derive them: profiles)."""
    from tracking.models import Finding

    ids = [uuid.UUID(e.id) for e, _ in pairs]
    have = set(
        Finding.objects.filter(activity_id__in=ids).values_list("activity_id", "detector", "tag")
    )
    rows = []
    for event, findings in pairs:
        aid = uuid.UUID(event.id)
        for f in findings:
            key = (aid, str(f["detector"])[:64], str(f["tag"])[:64])
            if key in have:
                continue
            have.add(key)
            try:
                score = float(f.get("score") or 0.0)
            except (TypeError, ValueError):
                score = 0.0
            severity = (
                f.get("severity")
                if f.get("severity") in ("low", "medium", "high", "critical")
                else "low"
            )
            rows.append(
                Finding(
                    activity_id=aid,
                    timestamp=event.timestamp,
                    detector=key[1],
                    tag=key[2],
                    score=score,
                    severity=severity,
                    reason=str(f.get("reason") or "")[:512],
                    evidence={"imported": True},
                    flag=bool(event.verdict.get("flagged")),
                )
            )
    if rows:
        Finding.objects.bulk_create(rows)


def run_import(
    command,
    stream: IO[str],
    fmt: str,
    *,
    batch_size: int,
    sort_window: int,
    progress_every: int,
    quiet: bool,
    progress=None,
    redetect: bool = False,
    summary: Summary | None = None,
) -> Summary:
    """Import everything ``stream`` holds; see the module docstring.

    ``summary`` (optional) is filled in place, so a caller still has the counts when the
    input breaks off with an exception.
    """
    summary = summary if summary is not None else Summary()
    importer = _Importer(command, summary, batch_size, quiet, redetect)
    window: list[tuple[datetime, int, int, Any, list[dict]]] = []
    last_out: datetime | None = None

    def emit(item) -> None:
        nonlocal last_out
        ts, _, number, event, findings = item
        if last_out is not None and ts < last_out:
            summary.late += 1
        else:
            last_out = ts
        importer.add(number, event, findings)

    try:
        _read_all(
            READERS[fmt](stream),
            summary,
            importer,
            window,
            emit,
            sort_window,
            progress_every,
            quiet,
            progress,
        )
    finally:
        # Even when the input breaks off (truncated gzip, I/O error), what was read is kept.
        try:
            while window:
                emit(heapq.heappop(window))
            importer.flush()
        finally:
            importer.close()
    return summary


def _read_all(
    reader, summary, importer, window, emit, sort_window, progress_every, quiet, progress
):
    seq = 0
    for number, record in reader:
        summary.lines += 1
        if isinstance(record, BadRecord):
            importer.bad(number, str(record))
        else:
            try:
                event = event_from_record(record)
            except BadRecord as exc:
                importer.bad(number, str(exc))
            else:
                seq += 1
                heapq.heappush(window, (event.timestamp, seq, number, event, _findings(record)))
                if len(window) > sort_window:
                    emit(heapq.heappop(window))
        if not quiet and progress and summary.lines % progress_every == 0:
            progress(summary)


def handle(
    command,
    *,
    path: str,
    format: str | None = None,
    batch_size: int | None = None,
    sort_window: int = 10000,
    progress_every: int = 10000,
    quiet: bool = False,
    redetect: bool = False,
    **options,
) -> int:
    from tracking.conf import tracking_settings

    fmt = format or (detect_format(path) if path != "-" else "ndjson")
    if fmt is None:
        command.stderr.write(f"cannot tell the format of {path!r} from its name; pass --format")
        return 2
    try:
        stream, counter, size = open_text(path)
    except OSError as exc:
        command.stderr.write(f"cannot read {path}: {exc.strerror or exc}")
        return 2
    started = time.monotonic()

    def progress(summary: Summary) -> None:
        pct = f" ({min(100.0, 100.0 * counter.count / size):.0f}%)" if size else ""
        rate = summary.lines / max(time.monotonic() - started, 1e-6)
        command.stderr.write(
            f"{summary.lines} records read{pct}, {summary.imported} imported, "
            f"{summary.bad} bad, {rate:.0f}/s"
        )

    summary = Summary()
    failure = ""
    try:
        with stream:
            run_import(
                command,
                stream,
                fmt,
                batch_size=batch_size or int(tracking_settings.BATCH_SIZE),
                sort_window=sort_window,
                progress_every=progress_every,
                quiet=quiet,
                progress=progress,
                redetect=redetect,
                summary=summary,
            )
    except BadRecord as exc:  # the file as a whole is unreadable (no array, bad CSV header)
        failure = str(exc)
    except (OSError, EOFError, csv.Error, UnicodeDecodeError) as exc:  # truncated gzip, I/O
        failure = f"cannot read {path}: {exc}"
    if failure:
        command.stderr.write(failure)
    message = (
        f"{summary.imported} imported, {summary.present} already present, {summary.bad} bad lines"
    )
    if summary.late:
        message += f" ({summary.late} record(s) were more than --sort-window out of order)"
    command.stdout.write(message)
    if failure:
        return 2
    if summary.bad and not (summary.imported or summary.present):
        return 1
    return 0
