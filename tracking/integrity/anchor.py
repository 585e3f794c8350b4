"""Chain anchors kept outside the database, and rows left unsealed behind the chain head.

Cutting the tail of the chain (the newest seals with chosen rows, then letting the sealer
re-seal the rest) leaves a chain that is consistent in itself: only a chain head recorded
elsewhere proves it happened. ``tracking doctor`` keeps one in ``TRACKING_ANCHOR_FILE`` (a
file on a host or volume the database cannot reach): each run checks that the head it
recorded last is still in the chain with the same hash, then records the current head.
``tracking verify`` compares with the same file. When the check fails the file is left as
it is, so the alarm repeats until someone looks.

Rows still unsealed although a seal made more than ``TRACKING_UNSEALED_BEHIND_HEAD_GRACE``
seconds after them exists are an alarm as well (for verify, health and the sealer): the
sealer takes rows in time order, so they were either refused (invalid MAC), or numbered
and then stripped of their seq after their seal was removed.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.db.models import Q
from django.utils import timezone

from tracking.conf import tracking_settings
from tracking.models import Activity, Seal


@dataclass(frozen=True)
class Anchor:
    last_seq: int
    chain_hash: str
    recorded_at: str = ""


def anchor_path(path: str | os.PathLike | None = None) -> Path | None:
    chosen = path or tracking_settings.ANCHOR_FILE
    return Path(chosen) if chosen else None


def read_anchor(path: Path) -> Anchor | None:
    """The anchor recorded in ``path``; None when the file does not exist yet.

    Raises ``ValueError`` when the file exists but is not an anchor (edited or corrupted).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
        anchor = Anchor(int(data["last_seq"]), str(data["chain_hash"]), str(data.get("at", "")))
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not a chain anchor file ({exc})") from exc
    if anchor.last_seq < 1 or len(anchor.chain_hash) != 64:
        raise ValueError(f"{path} is not a chain anchor file")
    return anchor


def anchor_problem(anchor: Anchor) -> str | None:
    """Why the chain no longer contains ``anchor``, or None when it does."""
    seal = Seal.objects.filter(last_seq=anchor.last_seq).order_by("id").first()
    if seal is not None and seal.chain_hash == anchor.chain_hash:
        return None
    found = "is gone" if seal is None else f"now has hash {seal.chain_hash[:16]}…"
    return (
        f"the chain head anchored at {anchor.recorded_at or 'an earlier run'} (seq "
        f"{anchor.last_seq}, {anchor.chain_hash[:16]}…) {found}: seals were removed or "
        f"rewritten; run `tracking verify --anchor {anchor.chain_hash}`"
    )


def write_anchor(path: Path, head: Seal) -> None:
    """Record ``head`` in ``path`` atomically (temp file, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "last_seq": head.last_seq,
        "chain_hash": head.chain_hash,
        "at": timezone.now().isoformat(timespec="seconds"),
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".anchor-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_and_advance(path: Path) -> dict[str, Any]:
    """Compare the chain with the anchor in ``path``; record the current head when it holds.

    Returns ``{"file", "anchored_seq", "anchored_hash", "problem", "advanced_to"}``.
    """
    info: dict[str, Any] = {"file": str(path), "problem": None, "advanced_to": None}
    try:
        anchor = read_anchor(path)
    except (OSError, ValueError) as exc:
        info["problem"] = f"anchor file: {exc}"
        return info
    if anchor is not None:
        info["anchored_seq"], info["anchored_hash"] = anchor.last_seq, anchor.chain_hash
        info["problem"] = anchor_problem(anchor)
        if info["problem"]:
            return info  # keep the evidence: the next run repeats the alarm
    head = Seal.objects.order_by("-last_seq").first()
    if head is not None and (anchor is None or head.last_seq > anchor.last_seq):
        try:
            write_anchor(path, head)
        except OSError as exc:
            info["problem"] = f"cannot write the anchor file: {exc}"
            return info
        info["advanced_to"] = head.last_seq
    return info


def behind_head_cutoff(head: Seal | None) -> Any:
    """Unsealed rows recorded before this time have a seal made well after them (or None)."""
    if head is None:
        return None
    grace = float(tracking_settings.UNSEALED_BEHIND_HEAD_GRACE or 0)
    return head.created_at - timedelta(seconds=grace)


def unsealed_behind_head(head: Seal | None = None):
    """Unsealed rows recorded more than the grace before the newest seal was made.

    Rows still waiting for geolocation within ``TRACKING_SEAL_GEO_PENDING_GRACE`` are left
    unsealed on purpose and are not counted.
    """
    head = head if head is not None else Seal.objects.order_by("-last_seq").first()
    cutoff = behind_head_cutoff(head)
    if cutoff is None:
        return Activity.objects.none()
    qs = Activity.objects.filter(seq__isnull=True, timestamp__lt=cutoff)
    geo_grace = tracking_settings.SEAL_GEO_PENDING_GRACE
    if geo_grace:
        recent = timezone.now() - timedelta(seconds=float(geo_grace))
        qs = qs.exclude(Q(geo_pending=True) & Q(timestamp__gt=recent))
    return qs
