"""Retention: delete old activities without breaking the chain or holding long locks.

``purge(before, batch_size, dry_run)``:

1. seals everything pending (old unsealed rows are sealed before they are purged);
2. finds ``through_seq`` from the seals' signed creation times, never from row timestamps
   (which anyone with database access can edit): the last seq of the run of seals made
   before ``before`` — a row is sealed after it is recorded, so their rows are older;
3. checks every row it is about to delete against its seal (leaf hash, row MAC, id at its
   seq) and **refuses** (deletes nothing, ``refused`` and ``mismatches`` in the report)
   when one does not match: deleting it would erase the evidence;
4. writes one signed ``Checkpoint`` *before* deleting, so an interrupted purge still verifies
   (rows under a checkpoint are no longer expected; those still present are still checked)
   and a re-run finishes the job;
5. deletes the rows of those seals (and their findings) in batches of ``batch_size``, each
   batch its own short transaction;
6. rows older than ``before`` that were sealed after newer ones (late imports) are checked
   the same way, then deleted through ``delete_activities`` with a signed tombstone each.

Seals are kept (small), so the chain still verifies end to end. Rollups (hourly aggregates)
are kept as well: they hold counts, not activities. A PostgreSQL deployment that partitions
by time can extend ``purge`` to drop whole partitions under the same checkpoint.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from tracking.integrity import macs as integrity
from tracking.integrity.crypto import DecryptionError
from tracking.integrity.sealing import (
    allow_delete,
    chain_hash,
    delete_activities,
    leaves_digest,
    seal_message,
    seal_pending,
    write_checkpoint,
)
from tracking.models import Activity, Finding, Seal
from tracking.storage import partitioning

logger = logging.getLogger("tracking.retention")

DEFAULT_BATCH_SIZE = 1000
# Leaves compared per query when checking rows against their seals; mismatches listed.
CHECK_CHUNK = 5000
MAX_LISTED = 100


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
    refused: bool = False
    mismatches: list[str] = field(default_factory=list)  # "<id>: <why>", at most MAX_LISTED
    mismatch_count: int = 0

    def mismatch(self, ident: Any, why: str) -> None:
        self.mismatch_count += 1
        if len(self.mismatches) < MAX_LISTED:
            self.mismatches.append(f"{ident}: {why}")

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
            "refused": self.refused,
            "mismatch_count": self.mismatch_count,
            "mismatches": self.mismatches,
        }


def cutoff_for_days(days: int) -> datetime:
    return timezone.now() - timedelta(days=days)


def purgeable_through(before: datetime, report: PurgeReport | None = None) -> int:
    """The last seq of the run of seals (from the start of the chain) made before ``before``.

    Seal times are signed; a row is recorded before it is sealed, so every row of those
    seals is older than ``before``. Older rows sealed later are purged one by one as
    stragglers. A seal whose signature does not verify ends the run (and is a mismatch in
    ``report``). It need not end where an earlier checkpoint did: ``tracking verify`` still
    checks every seal's chain link and any row left in the range.
    """
    through = 0
    seals = Seal.objects.order_by("last_seq").only("last_seq", "created_at", "chain_hash", "mac")
    for seal in seals.iterator(chunk_size=2000):
        if seal.created_at >= before:
            break
        if not integrity.check(seal_message(seal), "seal", seal.mac):
            if report is not None:
                report.mismatch(f"seal {seal.pk}", "seal signature invalid (seal edited)")
            break
        through = seal.last_seq
    return through


def _compare(report: PurgeReport, rows, expected: dict[int, tuple[str, str]]) -> None:
    """Report each row whose id, leaf or MAC does not match what its seal lists."""
    for row in rows:
        slot = expected.get(row.seq)
        if slot is None:
            report.mismatch(row.id, f"seq {row.seq} is not listed by any seal")
            continue
        try:
            leaf, valid = integrity.row_state(row)
        except DecryptionError:
            report.mismatch(row.id, "headers/params cannot be decrypted")
            continue
        if slot[0] != str(row.id):
            report.mismatch(row.id, f"seq {row.seq} belongs to activity {slot[0]}")
        elif leaf != slot[1]:
            report.mismatch(row.id, "content changed since it was sealed")
        elif not valid:
            report.mismatch(row.id, "row MAC or user changed since it was sealed")


def _seal_intact(seal: Seal) -> str | None:
    """Why a seal cannot be trusted to say what its rows were (None when it can)."""
    if leaves_digest(seal.leaves) != seal.digest:
        return "seal leaves do not match its digest (seal edited)"
    computed = chain_hash(seal.prev_hash, seal.digest, seal.first_seq, seal.last_seq, seal.count)
    if computed != seal.chain_hash:
        return "seal chain hash does not match its content (seal edited)"
    if not integrity.check(seal_message(seal), "seal", seal.mac):
        return "seal signature invalid (seal edited)"
    return None


def _leaves(report: PurgeReport, seals) -> dict[int, tuple[str, str]]:
    """seq -> (activity id, leaf) of intact seals; an edited seal is a mismatch."""
    expected: dict[int, tuple[str, str]] = {}
    for seal in seals:
        problem = _seal_intact(seal)
        if problem:
            report.mismatch(f"seal {seal.pk}", problem)
            continue
        for offset, line in enumerate(seal.leaves.split("\n") if seal.leaves else []):
            aid, _, leaf = line.partition(":")
            try:
                aid = str(uuid.UUID(aid))
            except ValueError:
                continue
            expected[seal.first_seq + offset] = (aid, leaf)
    return expected


def check_range(report: PurgeReport, through: int) -> None:
    """Compare every row still present at seq 1..``through`` with its seal."""
    group: list[Seal] = []
    size = 0
    seals = Seal.objects.filter(first_seq__lte=through).order_by("last_seq")
    for seal in seals.iterator(chunk_size=200):
        group.append(seal)
        size += seal.count
        if size >= CHECK_CHUNK:
            _check_group(report, group, through)
            group, size = [], 0
    if group:
        _check_group(report, group, through)


def _check_group(report: PurgeReport, group: list[Seal], through: int) -> None:
    lo, hi = group[0].first_seq, min(group[-1].last_seq, through)
    rows = Activity.objects.filter(seq__gte=lo, seq__lte=hi).order_by("seq")
    _compare(report, rows.iterator(chunk_size=2000), _leaves(report, group))


def check_stragglers(report: PurgeReport, stragglers) -> None:
    """Compare each sealed straggler (old timestamp, beyond the range) with its seal."""
    rows = list(stragglers.filter(seq__isnull=False).order_by("seq")[: CHECK_CHUNK * 20])
    if not rows:
        return
    seqs = [r.seq for r in rows]
    seals = Seal.objects.filter(last_seq__gte=min(seqs), first_seq__lte=max(seqs))
    _compare(report, rows, _leaves(report, seals.order_by("last_seq")))


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
    through = purgeable_through(before, report)
    report.through_seq = through
    ranged = Activity.objects.filter(seq__isnull=False, seq__lte=through)
    stragglers = Activity.objects.filter(timestamp__lt=before).exclude(
        seq__isnull=False, seq__lte=through
    )
    if through:
        check_range(report, through)
    check_stragglers(report, stragglers)
    if report.mismatch_count:
        # Rows that no longer match their seals are evidence of tampering: refuse, delete
        # nothing, and name them (`tracking verify` reports them as well).
        report.refused = True
        logger.error(
            "purge refused: %d activities to be deleted do not match their seals (%s)",
            report.mismatch_count,
            "; ".join(report.mismatches[:5]),
        )
        return report
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
