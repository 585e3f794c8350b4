"""``tracking import PATH [--format ndjson|json|csv]``: load activities from a file.

Reads what ``tracking export`` writes (every field of the record, see
``tracking.export.record``; the readers are ``tracking.export.readers``) and minimal records (``timestamp``, ``type``, ``ip_address``,
``endpoint``, ``method``, ``status`` and optionally ``id``, ``username``, ``user_agent``,
``session_id``, ``duration``, ``headers``, ``params``, ``outcome``: ``success`` or
``failure``; without it a status >= 400 means failure). Unknown keys (e.g. the simulator's
``label``) are ignored. Every record goes through the same batch step as live traffic
(``tracking.pipeline.mapping.event_from_record``, then ``ActivityTracker.record_many`` →
``tracking.pipeline.ingest``): enrichment (fields an export already carries are kept),
redaction, encryption and detection.

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
import csv
import heapq
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any

from tracking.capture import tracker as capture
from tracking.conf import tracking_settings
from tracking.events import BadRecord
from tracking.export.readers import FORMATS, READERS, detect_format, open_text
from tracking.pipeline.mapping import event_from_record, recorded_findings

help = "Import activities from an NDJSON, JSON or CSV file (what `tracking export` writes)."

MAX_REPORTED = 1000  # bad lines printed individually; the rest are only counted


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


# -- the import loop -----------------------------------------------------------------------


class _Importer:
    def __init__(
        self, command, summary: Summary, batch_size: int, quiet: bool, redetect: bool = False
    ) -> None:
        self.command = command
        self.summary = summary
        self.batch_size = batch_size
        self.quiet = quiet
        self.tracker = capture.get_tracker()
        self.batch: list[tuple[int, Any, list[dict]]] = []
        self.redetect = redetect
        self.restoring = False

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
        # Restored records keep the verdict they were exported with: profiles learn from
        # them, no detector or rule judges them again.
        result = self.tracker.record_many(events, batch_size=len(batch), detect=not self.restoring)
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
        while window:
            emit(heapq.heappop(window))
        importer.flush()
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
                heapq.heappush(
                    window, (event.timestamp, seq, number, event, recorded_findings(record))
                )
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
