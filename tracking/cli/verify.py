"""``tracking verify [--since DATE] [--json] [--anchor HASH]``: prove the log is untouched.

Exit code 0 when everything verifies, 1 when anything was changed, removed or inserted
behind the application's back, 2 when verification could not run (e.g. no seal key).
"""

from __future__ import annotations

import argparse
import json as jsonlib
from datetime import datetime
from datetime import timezone as dt_timezone

from django.core.exceptions import ImproperlyConfigured

from tracking.dates import parse_iso_date, parse_iso_datetime
from tracking.integrity.anchor import anchor_path, read_anchor
from tracking.integrity.verify import verify

UTC = dt_timezone.utc

help = "Re-compute the hash chain and report every changed, removed or inserted activity."


def parse_when(text: str) -> datetime:
    """A strict ISO date or date-time (``tracking.dates``); naive values are UTC."""
    value = parse_iso_datetime(text.strip())
    if value is None:
        day = parse_iso_date(text.strip())
        if day is None:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a date (YYYY-MM-DD) or ISO date-time (YYYY-MM-DDTHH:MM[:SS])"
            )
        value = datetime(day.year, day.month, day.day)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


def add_arguments(parser) -> None:
    parser.add_argument(
        "--since",
        type=parse_when,
        default=None,
        help="check rows recorded at or after this date/time only (the chain is always fully checked)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--anchor",
        default=None,
        help="a chain hash kept outside the database (printed by `tracking seal`); "
        "fails if the chain no longer contains it",
    )
    parser.add_argument(
        "--anchor-file",
        default=None,
        help="the anchor file `tracking doctor` keeps (default: TRACKING_ANCHOR_FILE when "
        "--anchor is not given); fails if the chain no longer contains its head",
    )


def handle(
    command, *, since=None, json: bool = False, anchor=None, anchor_file=None, **options
) -> int:
    path = anchor_path(anchor_file) if (anchor_file or not anchor) else None
    if path is not None:
        try:
            kept = read_anchor(path)
        except (OSError, ValueError) as exc:
            command.stderr.write(f"cannot verify: {exc}")
            return 2
        if kept is None and anchor_file:
            command.stderr.write(f"cannot verify: no anchor file at {path}")
            return 2
        if kept is not None:
            anchor = kept.chain_hash
    try:
        report = verify(since, anchor=anchor)
    except ImproperlyConfigured as exc:
        command.stderr.write(f"cannot verify: {exc}")
        return 2
    if json:
        command.stdout.write(jsonlib.dumps(report.to_dict(), indent=2))
    else:
        for line in report.summary_lines():
            command.stdout.write(line)
    return 0 if report.ok else 1
