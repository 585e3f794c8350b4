"""``tracking purge --days N | --before DATE [--batch-size N] [--dry-run]``.

Without ``--days``/``--before`` it uses ``TRACKING_RETENTION_DAYS`` (for cron/scheduled use).
"""

from __future__ import annotations

import json as jsonlib

from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from tracking.cli.verify import parse_when
from tracking.conf import tracking_settings
from tracking.storage.retention import DEFAULT_BATCH_SIZE, cutoff_for_days, purge

help = "Delete activities older than a cutoff in batches, keeping the chain verifiable."


def add_arguments(parser) -> None:
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--days", type=int, default=None, help="delete activities older than N days")
    when.add_argument(
        "--before", type=parse_when, default=None, help="delete activities before DATE"
    )
    parser.add_argument("--batch-size", type=int, default=None, help="rows per delete transaction")
    parser.add_argument("--dry-run", action="store_true", help="report what would be removed")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def handle(
    command, *, days=None, before=None, batch_size=None, dry_run=False, json=False, **options
) -> int:
    if days is None and before is None:
        days = tracking_settings.RETENTION_DAYS
        if days is None:
            command.stderr.write("give --days N or --before DATE (or set TRACKING_RETENTION_DAYS)")
            return 2
    if days is not None and (isinstance(days, bool) or not isinstance(days, int) or days < 0):
        command.stderr.write(f"--days must be a whole number of days >= 0, got {days!r}")
        return 2
    if batch_size is not None and batch_size < 1:
        command.stderr.write("--batch-size must be a positive number")
        return 2
    cutoff = before if before is not None else cutoff_for_days(days)  # type: ignore[arg-type]  # days is set when before is not
    if cutoff > timezone.now():
        command.stderr.write(
            f"--before {cutoff.isoformat()} is in the future: that would delete activities "
            "being recorded now; nothing was deleted"
        )
        return 2
    try:
        report = purge(cutoff, batch_size or DEFAULT_BATCH_SIZE, dry_run, by="tracking purge")
    except ImproperlyConfigured as exc:
        command.stderr.write(f"cannot purge: {exc}")
        return 2
    if json:
        command.stdout.write(jsonlib.dumps(report.to_dict(), indent=2))
        return 1 if report.refused else 0
    if report.refused:
        command.stderr.write(
            f"REFUSED: {report.mismatch_count} activities to be purged do not match their "
            "seals; nothing was deleted (run `tracking verify`):"
        )
        for line in report.mismatches:
            command.stderr.write(f"  {line}")
        return 1
    verb = "Would remove" if dry_run else "Removed"
    command.stdout.write(f"{verb} {report.removed} activities older than {cutoff.isoformat()}")
    for type_, n in sorted(report.by_type.items()):
        command.stdout.write(f"  {type_}: {n}")
    if not dry_run:
        command.stdout.write(
            f"Purged sealed rows through seq {report.through_seq} in {report.batches} batches"
            f" ({report.tombstoned} late rows deleted with tombstones); "
            f"checkpoint {report.checkpoint_id or '-'}."
        )
    return 0
