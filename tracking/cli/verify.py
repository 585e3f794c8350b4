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
from django.utils.dateparse import parse_date, parse_datetime

UTC = dt_timezone.utc

help = "Re-compute the hash chain and report every changed, removed or inserted activity."


def parse_when(text: str) -> datetime:
    """An ISO date or date-time; naive values are UTC."""
    value = parse_datetime(text)
    if value is None:
        day = parse_date(text)
        if day is None:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a date (YYYY-MM-DD) or ISO date-time"
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


def handle(command, *, since=None, json: bool = False, anchor=None, **options) -> int:
    from tracking.integrity.verify import verify

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
