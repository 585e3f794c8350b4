"""``tracking verify``: re-compute the hash chain and compare it with the rows.

What is checked (each failure is a ``Problem`` naming the activity id where there is one):

- every seal: its digest over its leaves, its chain hash, its MAC (``TRACKING_SEAL_KEYS``) and
  its link to the previous seal (prev hash, consecutive seq range) — a seal deleted, edited or
  reordered breaks the chain;
- every tombstone and checkpoint: its MAC;
- every sealed row against its seal's leaf: content changed (leaf differs), row MAC altered,
  seq moved, removed (leaf without row, no tombstone, not purged by a checkpoint), inserted
  (a row at a sealed seq that is not that seq's leaf, a row whose seq no seal covers, a row
  present again after its tombstone);
- every unsealed row: its MAC (an invalid MAC means it was written or changed behind the app).

Rows are streamed by seq in bounded chunks; headers/params are decrypted only to re-compute
canonical bytes. Deleting an *unsealed* row behind the app's back cannot be detected (there is
nothing yet to compare with): that is the unsealed window described in SECURITY.md.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import Q

from tracking.integrity import macs as integrity
from tracking.integrity.anchor import unsealed_behind_head
from tracking.integrity.crypto import DecryptionError
from tracking.integrity.sealing import (
    GENESIS,
    chain_hash,
    checkpoint_message,
    leaves_digest,
    seal_message,
    tombstone_message,
)
from tracking.models import Activity, Checkpoint, Intake, Seal, Tombstone

# Leaves (rows) compared per database round trip.
CHUNK = 5000

CHANGED = "changed"
REMOVED = "removed"
INSERTED = "inserted"
SEQ = "seq"
SEAL = "seal"
TOMBSTONE = "tombstone"
CHECKPOINT = "checkpoint"
UNSEALED = "unsealed"


@dataclass
class Problem:
    kind: str
    message: str
    activity_id: str | None = None
    seq: int | None = None
    seal_id: int | None = None

    def line(self) -> str:
        where = []
        if self.activity_id:
            where.append(f"activity {self.activity_id}")
        if self.seq is not None:
            where.append(f"seq {self.seq}")
        if self.seal_id is not None:
            where.append(f"seal {self.seal_id}")
        return f"{self.kind.upper():<10} {', '.join(where) or '-'}: {self.message}"


@dataclass
class VerifyReport:
    seals: int = 0
    sealed_through: int = 0
    head: str = ""
    sealed_rows_checked: int = 0
    unsealed_rows_checked: int = 0
    # Synchronous requests' events committed to the intake, not yet stored as activities (for
    # a fraction of a second normally): encrypted and authenticated there, not yet in a row.
    unjudged: int = 0
    tombstones: int = 0
    deleted_ok: int = 0
    checkpoints: int = 0
    purged_through: int = 0
    purged_absent: int = 0
    since: str | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, kind: str, message: str, **where: Any) -> None:
        if where.get("activity_id") is not None:
            where["activity_id"] = str(where["activity_id"])
        self.problems.append(Problem(kind, message, **where))

    def ids(self, kind: str | None = None) -> set[str]:
        return {p.activity_id for p in self.problems if p.activity_id and kind in (None, p.kind)}

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        data["counts"] = {}
        for p in self.problems:
            data["counts"][p.kind] = data["counts"].get(p.kind, 0) + 1
        return data

    def summary_lines(self) -> Iterator[str]:
        scope = f" (rows since {self.since})" if self.since else ""
        yield (f"Seals: {self.seals} (seq 1..{self.sealed_through}), chain head {self.head or '-'}")
        yield (
            f"Rows checked{scope}: {self.sealed_rows_checked} sealed, "
            f"{self.unsealed_rows_checked} unsealed"
            + (
                f"; {self.unjudged} events in the intake awaiting their verdict"
                if self.unjudged
                else ""
            )
        )
        yield (
            f"Tombstones: {self.tombstones} ({self.deleted_ok} legitimate deletions verified); "
            f"checkpoints: {self.checkpoints} (purged through seq {self.purged_through}, "
            f"{self.purged_absent} rows purged)"
        )
        if self.ok:
            yield "OK: the log verifies."
            return
        counts = self.to_dict()["counts"]
        yield "FAILED: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
        for p in self.problems:
            yield "  " + p.line()


def _row_state(row: Activity) -> tuple[str | None, bool, str]:
    """(leaf hash or None, MAC valid, error text); canonical bytes are computed once."""
    try:
        leaf, valid = integrity.row_state(row)
    except DecryptionError as exc:
        return None, False, f"headers/params cannot be decrypted ({exc})"
    return leaf, valid, ""


class _Verifier:
    def __init__(self, since: datetime | None, anchor: str | None) -> None:
        self.since = since
        self.anchor = anchor
        self.report = VerifyReport(since=since.isoformat() if since else None)
        self.tombstones: dict[str, Tombstone] = {}
        self.gaps: list[tuple[int, int]] = []
        self.head: Seal | None = None

    # -- signed side records ----------------------------------------------------------------
    def load_tombstones(self) -> None:
        for t in Tombstone.objects.order_by("id").iterator(chunk_size=2000):
            self.report.tombstones += 1
            if t.key_id == t.mac.partition(":")[0] and integrity.check(
                tombstone_message(t), "tombstone", t.mac
            ):
                self.tombstones[str(t.activity_id)] = t
            else:
                self.report.add(
                    TOMBSTONE,
                    "tombstone signature invalid (forged or edited): the deletion is not proven",
                    activity_id=t.activity_id,
                    seq=t.seq,
                )

    def load_checkpoints(self) -> None:
        for c in Checkpoint.objects.order_by("through_seq", "id"):
            self.report.checkpoints += 1
            if c.key_id == c.mac.partition(":")[0] and integrity.check(
                checkpoint_message(c), "checkpoint", c.mac
            ):
                self.report.purged_through = max(self.report.purged_through, c.through_seq)
            else:
                self.report.add(
                    CHECKPOINT,
                    f"purge checkpoint {c.pk} (through seq {c.through_seq}) signature invalid",
                )

    # -- the chain ----------------------------------------------------------------------------
    def check_seal(self, seal: Seal, prev: Seal | None) -> list[str]:
        """Check one seal and its link; returns its leaf lines."""
        r = self.report
        lines = seal.leaves.split("\n") if seal.leaves else []
        expected_prev = prev.chain_hash if prev else GENESIS
        expected_first = (prev.last_seq + 1) if prev else 1
        if seal.prev_hash != expected_prev or seal.first_seq != expected_first:
            what = f"after seal {prev.pk}" if prev else "at the start of the chain"
            r.add(
                SEAL,
                f"chain broken {what}: expected prev hash {expected_prev[:16]}… and first seq "
                f"{expected_first}, found {seal.prev_hash[:16]}… and {seal.first_seq} "
                "(a seal was removed, edited or reordered)",
                seal_id=seal.pk,
            )
            if seal.first_seq > expected_first:
                self.gaps.append((expected_first, seal.first_seq - 1))
        if seal.count != len(lines) or seal.last_seq - seal.first_seq + 1 != seal.count:
            r.add(
                SEAL,
                f"seal covers seq {seal.first_seq}..{seal.last_seq} but lists {len(lines)} "
                f"leaves (count {seal.count})",
                seal_id=seal.pk,
            )
        if leaves_digest(seal.leaves) != seal.digest:
            r.add(SEAL, "leaves do not match the seal's digest (seal edited)", seal_id=seal.pk)
        if chain_hash(seal.prev_hash, seal.digest, seal.first_seq, seal.last_seq, seal.count) != (
            seal.chain_hash
        ):
            r.add(
                SEAL, "chain hash does not match the seal's content (seal edited)", seal_id=seal.pk
            )
        if seal.key_id != seal.mac.partition(":")[0]:
            r.add(SEAL, "key id does not match the seal's signature (seal edited)", seal_id=seal.pk)
        if not integrity.check(seal_message(seal), "seal", seal.mac):
            known = integrity.key_by_id(seal.key_id) is not None
            r.add(
                SEAL,
                "seal signature invalid"
                + ("" if known else f" (key id {seal.key_id!r} is not in TRACKING_SEAL_KEYS)"),
                seal_id=seal.pk,
            )
        return lines

    def seals(self) -> Iterator[tuple[Seal, list[str]]]:
        prev = None
        r = self.report
        for seal in Seal.objects.order_by("last_seq", "id").iterator(chunk_size=200):
            lines = self.check_seal(seal, prev)
            r.seals += 1
            r.sealed_through = seal.last_seq
            r.head = seal.chain_hash
            self.head = seal
            if self.anchor and seal.chain_hash == self.anchor:
                self.anchor = None
            yield seal, lines
            prev = seal
        if self.anchor:
            r.add(
                SEAL,
                f"anchor {self.anchor} is not in the chain (seals were truncated or rewritten)",
            )

    # -- rows ---------------------------------------------------------------------------------
    def in_scope(self, seal: Seal) -> bool:
        # A row is sealed after it is recorded, so a seal made before `since` holds no row
        # recorded at or after it. The seal's time is covered by its MAC.
        return self.since is None or seal.created_at >= self.since

    def check_sealed(self) -> None:
        group: list[tuple[Seal, list[str]]] = []
        size = 0
        for seal, lines in self.seals():
            if not self.in_scope(seal):
                continue
            if group and seal.first_seq != group[-1][0].last_seq + 1:
                # Only consecutive seals share a seq-range query (a gap is reported above).
                self.check_group(group)
                group, size = [], 0
            group.append((seal, lines))
            size += len(lines)
            if size >= CHUNK:
                self.check_group(group)
                group, size = [], 0
        if group:
            self.check_group(group)

    def check_group(self, group: list[tuple[Seal, list[str]]]) -> None:
        r = self.report
        expected: dict[int, tuple[str, str, Seal]] = {}  # seq -> (id, leaf, seal)
        by_id: dict[str, int] = {}
        for seal, lines in group:
            for offset, line in enumerate(lines):
                aid, _, leaf = line.partition(":")
                seq = seal.first_seq + offset
                try:
                    aid = str(uuid.UUID(aid))
                except ValueError:
                    # Only an edited seal has this (its digest/MAC check reported it).
                    r.add(SEAL, f"leaf {offset + 1} is not 'id:hash'", seq=seq, seal_id=seal.pk)
                    continue
                expected[seq] = (aid, leaf, seal)
                by_id[aid] = seq
        lo, hi = group[0][0].first_seq, group[-1][0].last_seq
        seen: set[str] = set()
        rows = Activity.objects.filter(seq__gte=lo, seq__lte=hi).order_by("seq", "id")
        for row in rows.iterator(chunk_size=2000):
            self.check_sealed_row(row, expected, by_id, seen)
        missing = [aid for aid in by_id if aid not in seen]
        moved: dict[str, Activity] = {}
        for start in range(0, len(missing), 1000):
            part = missing[start : start + 1000]
            for row in Activity.objects.filter(id__in=part):
                moved[str(row.id)] = row
        for aid in missing:
            seq = by_id[aid]
            _, leaf, seal = expected[seq]
            row = moved.get(aid)
            if row is not None and self.since is not None and row.timestamp < self.since:
                continue
            if row is not None:
                r.sealed_rows_checked += 1
                r.add(
                    SEQ,
                    f"row moved from seq {seq} (seal {seal.pk}) to "
                    f"{'no seq' if row.seq is None else f'seq {row.seq}'}",
                    activity_id=aid,
                    seq=seq,
                )
                self.compare(row, leaf, seq, seal)
                continue
            self.check_absent(aid, seq, leaf, seal)

    def check_sealed_row(self, row, expected, by_id, seen) -> None:
        r = self.report
        aid = str(row.id)
        if self.since is not None and row.timestamp < self.since:
            # Out of scope for --since (present, so not "removed"); a full verify checks it.
            seen.add(aid)
            return
        r.sealed_rows_checked += 1
        slot = expected.get(row.seq)
        if slot is None:
            # A seal of this group that failed its own checks may list fewer leaves.
            r.add(INSERTED, "row's seq is not listed by its seal", activity_id=aid, seq=row.seq)
            return
        want_id, leaf, seal = slot
        if want_id == aid:
            seen.add(aid)
            if aid in self.tombstones:
                r.add(
                    INSERTED,
                    "row is present again after its deletion through the app (tombstone)",
                    activity_id=aid,
                    seq=row.seq,
                )
            self.compare(row, leaf, row.seq, seal)
        elif aid in by_id:
            seen.add(aid)
            r.add(
                SEQ,
                f"row moved from seq {by_id[aid]} to seq {row.seq}",
                activity_id=aid,
                seq=row.seq,
            )
            self.compare(row, expected[by_id[aid]][1], by_id[aid], seal)
        else:
            r.add(
                INSERTED,
                f"row at sealed seq {row.seq} is not in seal {seal.pk} (inserted behind the "
                "application's back)",
                activity_id=aid,
                seq=row.seq,
            )

    def compare(self, row: Activity, leaf: str, seq: int, seal: Seal) -> None:
        actual, mac_ok, error = _row_state(row)
        if error:
            self.report.add(CHANGED, error, activity_id=row.id, seq=seq, seal_id=seal.pk)
        elif actual != leaf:
            self.report.add(
                CHANGED,
                f"content changed since it was sealed (leaf hash differs from seal {seal.pk})",
                activity_id=row.id,
                seq=seq,
                seal_id=seal.pk,
            )
        elif not mac_ok:
            self.report.add(
                CHANGED,
                "row MAC does not verify although the content matches its seal: the row MAC "
                "or the row's user (user_id) was changed",
                activity_id=row.id,
                seq=seq,
            )

    def check_absent(self, aid: str, seq: int, leaf: str, seal: Seal) -> None:
        r = self.report
        t = self.tombstones.get(aid)
        if t is not None:
            if t.leaf and t.leaf == leaf:
                r.deleted_ok += 1
            else:
                r.add(
                    CHANGED,
                    f"deleted through the app ({t.reason}), but the row had been changed "
                    "before its deletion",
                    activity_id=aid,
                    seq=seq,
                    seal_id=seal.pk,
                )
            return
        if seq <= r.purged_through:
            r.purged_absent += 1
            return
        r.add(
            REMOVED,
            f"row removed (listed by seal {seal.pk}; no tombstone, not purged)",
            activity_id=aid,
            seq=seq,
            seal_id=seal.pk,
        )

    def check_uncovered(self) -> None:
        """Rows whose seq no seal covers (seal deleted, or seq forged)."""
        r = self.report
        cond = Q(seq__gt=r.sealed_through) | Q(seq__lt=1)
        for lo, hi in self.gaps:
            cond |= Q(seq__gte=lo, seq__lte=hi)
        qs = Activity.objects.filter(seq__isnull=False).filter(cond)
        if self.since is not None:
            qs = qs.filter(timestamp__gte=self.since)
        for row in qs.order_by("seq").iterator(chunk_size=2000):
            r.sealed_rows_checked += 1
            r.add(
                INSERTED,
                f"row has seq {row.seq} but no seal covers it (seal removed, or seq forged)",
                activity_id=row.id,
                seq=row.seq,
            )

    def check_unsealed(self) -> None:
        r = self.report
        r.unjudged = Intake.objects.count()
        qs = Activity.objects.filter(seq__isnull=True)
        if self.since is not None:
            qs = qs.filter(timestamp__gte=self.since)
        behind = set()
        if self.head is not None:
            behind = {str(i) for i in unsealed_behind_head(self.head).values_list("id", flat=True)}
        for row in qs.order_by("timestamp", "id").iterator(chunk_size=2000):
            r.unsealed_rows_checked += 1
            aid = str(row.id)
            if aid in self.tombstones:
                r.add(
                    INSERTED,
                    "row is present again after its deletion through the app (tombstone)",
                    activity_id=aid,
                )
                continue
            _, mac_ok, error = _row_state(row)
            # Nothing sealed to compare with: an unsealed row that fails is either inserted
            # or changed behind the application's back; both are reported with its id.
            if error:
                reason = error
            elif not row.mac:
                reason = "no row MAC"
            elif not mac_ok:
                reason = "invalid row MAC"
            else:
                # behind is only filled when there is a head.
                if aid in behind and self.head is not None:
                    r.add(
                        UNSEALED,
                        f"row recorded before the newest seal (seal {self.head.pk}, made "
                        f"{self.head.created_at.isoformat(timespec='seconds')}) is still "
                        "unsealed: its seal may have been removed and its seq stripped (a cut "
                        "chain tail); compare with an anchor (`--anchor`, TRACKING_ANCHOR_FILE)",
                        activity_id=aid,
                    )
                continue
            r.add(
                INSERTED,
                f"unsealed row inserted or changed behind the application's back ({reason})",
                activity_id=aid,
            )

    def run(self) -> VerifyReport:
        self.load_tombstones()
        self.load_checkpoints()
        self.check_sealed()
        self.check_uncovered()
        self.check_unsealed()
        return self.report


def verify(since: datetime | None = None, *, anchor: str | None = None) -> VerifyReport:
    """Verify the whole chain and the rows (rows at or after ``since`` only, if given).

    ``anchor``: a chain hash recorded outside the database (e.g. printed by ``tracking seal``);
    its absence from the chain proves the chain was truncated or rewritten.
    """
    return _Verifier(since, anchor).run()
