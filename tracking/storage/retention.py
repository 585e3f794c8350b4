"""Retention: delete old activities without breaking the chain or holding long locks.

``purge(before, batch_size, dry_run)``:

1. seals everything pending (old unsealed rows are sealed before they are purged);
2. finds ``through_seq``, the highest seq below every row at or after ``before``;
3. writes one signed ``Checkpoint`` *before* deleting, so an interrupted purge still verifies
   (rows under a checkpoint are no longer expected; those still present are still checked)
   and a re-run finishes the job;
4. deletes the rows of those seals (and their findings) in batches of ``batch_size``, each
   batch its own short transaction;
5. rows older than ``before`` that were sealed after newer ones (late imports) are deleted
   through ``delete_activities`` with a signed tombstone each.

Seals are kept (small), so the chain still verifies end to end. Rollups (hourly aggregates)
are kept as well: they hold counts, not activities. A PostgreSQL deployment that partitions
by time can extend ``purge`` to drop whole partitions under the same checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Count, Min
from django.utils import timezone

from tracking.integrity.sealing import (
    allow_delete,
    delete_activities,
    seal_pending,
    write_checkpoint,
)
from tracking.models import Activity, Finding, Seal
from tracking.storage import partitioning

DEFAULT_BATCH_SIZE = 1000


@dataclass
class PurgeReport:
    before: datetime
    dry_run: bool
    through_seq: int = 0
    removed: int = 0
    by_type: dict[str, int] = field(default_factory=dict)
    sealed_first: int = 0
    tombstoned: int = 0
    batches: int = 0
    checkpoint_id: int | None = None
    partitions: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "before": self.before.isoformat(),
            "dry_run": self.dry_run,
            "through_seq": self.through_seq,
            "removed": self.removed,
            "by_type": dict(sorted(self.by_type.items())),
            "sealed_first": self.sealed_first,
            "tombstoned": self.tombstoned,
            "batches": self.batches,
            "checkpoint_id": self.checkpoint_id,
            "partitions": self.partitions,
        }


def cutoff_for_days(days: int) -> datetime:
    return timezone.now() - timedelta(days=days)


def purgeable_through(before: datetime) -> int:
    """The highest seq such that every sealed row up to it is older than ``before``.

    It need not end on a seal boundary: the checkpoint says which seqs are no longer expected,
    and ``tracking verify`` still checks every seal's chain link and any row left in it.
    """
    newer = Activity.objects.filter(seq__isnull=False, timestamp__gte=before).aggregate(
        m=Min("seq")
    )["m"]
    last = Seal.objects.order_by("-last_seq").values_list("last_seq", flat=True).first() or 0
    return last if newer is None else min(last, newer - 1)


def _count_by_type(qs) -> dict[str, int]:
    return {row["type"]: row["n"] for row in qs.values("type").annotate(n=Count("id")).order_by()}


def _merge(into: dict[str, int], more: dict[str, int]) -> None:
    for k, v in more.items():
        into[k] = into.get(k, 0) + v


def purge(
    before: datetime,
    batch_size: int = DEFAULT_BATCH_SIZE,
    dry_run: bool = False,
    *,
    by: str = "",
) -> PurgeReport:
    """Delete activities older than ``before``; see the module docstring."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    report = PurgeReport(before=before, dry_run=dry_run)
    if not dry_run:
        report.sealed_first = seal_pending(include_geo_pending=True, wait=True)
    through = purgeable_through(before)
    report.through_seq = through
    ranged = Activity.objects.filter(seq__isnull=False, seq__lte=through)
    stragglers = Activity.objects.filter(timestamp__lt=before).exclude(
        seq__isnull=False, seq__lte=through
    )
    if dry_run:
        # Unsealed old rows would be sealed and then purged like the others.
        report.by_type = _count_by_type(ranged)
        _merge(report.by_type, _count_by_type(stragglers))
        report.removed = sum(report.by_type.values())
        return report
    if through or stragglers.exists():
        planned = ranged.count() if through else 0
        if through:
            # Written first: an interrupted purge still verifies and a re-run finishes it.
            report.checkpoint_id = write_checkpoint(through, before, planned, by=by).pk
        _delete_stragglers(report, stragglers, batch_size, by)
        _drop_partitions(report, before)
        while through:
            with transaction.atomic():
                allow_delete()
                ids = list(ranged.order_by("seq").values_list("id", flat=True)[:batch_size])
                if not ids:
                    break
                batch = Activity.objects.filter(id__in=ids)
                _merge(report.by_type, _count_by_type(batch))
                Finding.objects.filter(activity_id__in=ids).delete()
                report.removed += batch.delete()[1].get(Activity._meta.label, 0)
                report.batches += 1
    return report


def _delete_stragglers(report: PurgeReport, stragglers, batch_size: int, by: str) -> None:
    """Old rows sealed after newer ones (late imports) are outside the checkpoint's range:
    delete them through the app's deletion path, one signed tombstone each. Unsealed rows left
    here failed their MAC (evidence of tampering) and are kept for ``tracking verify``."""
    while True:
        ids = list(
            stragglers.filter(seq__isnull=False)
            .order_by("seq")
            .values_list("id", flat=True)[:batch_size]
        )
        if not ids:
            return
        _merge(report.by_type, _count_by_type(Activity.objects.filter(id__in=ids)))
        n = delete_activities(ids, reason="purge", by=by)
        report.removed += n
        report.tombstoned += n
        report.batches += 1


def _drop_partitions(report: PurgeReport, before: datetime) -> None:
    """PostgreSQL with monthly partitions: drop whole months older than ``before`` instead of
    deleting their rows. Every row left in them is older than the cutoff and either covered by
    the checkpoint just written or a refused (invalid MAC) row."""
    if not partitioning.is_partitioned():
        return
    victims = partitioning.partitions_before(before)
    if any(p.unsealed for p in victims):
        # Rows the sealer refused (invalid MAC) are evidence: delete row by row instead,
        # which keeps them for `tracking verify`.
        return
    for p in victims:
        counts = _count_by_type(
            Activity.objects.filter(timestamp__gte=p.start, timestamp__lt=p.end)
        )
        _merge(report.by_type, counts)
    result = partitioning.drop_partitions_before(before)
    report.removed += result.rows
    report.partitions = list(result.partitions)
