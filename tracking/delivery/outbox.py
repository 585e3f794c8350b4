"""The outbox every alert channel and forwarder reads, and their shared delivery state.

Writers add one ``OutboxEntry`` per committed batch (in the batch's transaction) and one per
block created or lifted. Each consumer keeps the last id it consumed (``DeliveryState.position``).
Ids come from a sequence, so on PostgreSQL an id can become visible after a higher one (its
transaction committed later) and a rolled-back transaction leaves a hole for ever. A reader
therefore stops at a hole younger than ``TRACKING_OUTBOX_GAP_GRACE`` seconds and, past that,
remembers the missing id in ``DeliveryState.gaps`` and picks the entry up should it appear
within a day: a slow transaction delays its rows, it never loses them.

One process at a time delivers for a consumer: ``claim`` takes a lease with one conditional
UPDATE (no transaction is held while talking to a receiver, so SQLite writers are not blocked).
"""

from __future__ import annotations

import os
import threading
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q, Sum
from django.utils import timezone

from tracking.conf import tracking_settings
from tracking.models import DeliveryState, OutboxEntry

LEASE_SECONDS = 120
GAP_MEMORY = timedelta(days=1)
_owner_lock = threading.Lock()
_owner: dict[str, Any] = {"pid": 0, "id": ""}


def owner() -> str:
    """This process's lease owner id (new after a fork)."""
    with _owner_lock:
        if _owner["pid"] != os.getpid():
            _owner.update(pid=os.getpid(), id=f"{os.getpid()}-{uuid.uuid4().hex[:12]}")
        return _owner["id"]


def state(name: str) -> DeliveryState:
    """The consumer's state row, created at position 0 (entries exist only while some consumer
    is configured, so a new one starts with what is not yet pruned)."""
    try:
        return DeliveryState.objects.get_or_create(name=name)[0]
    except IntegrityError:  # created concurrently by another process
        return DeliveryState.objects.get(name=name)


def claim(name: str, now: datetime | None = None) -> DeliveryState | None:
    """The consumer's state with a lease for this process, or None when another holds it."""
    now = now or timezone.now()
    state(name)
    me = owner()
    taken = DeliveryState.objects.filter(
        Q(lease_until__isnull=True) | Q(lease_until__lt=now) | Q(lease_owner=me), name=name
    ).update(lease_owner=me, lease_until=now + timedelta(seconds=LEASE_SECONDS))
    return DeliveryState.objects.get(name=name) if taken else None


def release(st: DeliveryState, **changes) -> None:
    """Save ``changes`` to the consumer's state and give up the lease (only if still ours)."""
    DeliveryState.objects.filter(pk=st.pk, lease_owner=owner()).update(
        lease_owner="", lease_until=None, **changes
    )
    for key, value in changes.items():
        setattr(st, key, value)


def read(
    st: DeliveryState, limit: int, now: datetime | None = None
) -> tuple[list[OutboxEntry], int, list]:
    """Entries after ``st.position`` (and remembered gaps that appeared), up to ``limit``.

    Returns ``(entries, new position, new gaps)``; the caller saves both once it has
    delivered the entries."""
    now = now or timezone.now()
    grace = timedelta(seconds=float(tracking_settings.OUTBOX_GAP_GRACE))
    gaps = [g for g in (st.gaps or []) if now - datetime.fromisoformat(g[1]) < GAP_MEMORY]
    entries: list[OutboxEntry] = []
    if gaps:
        found = list(OutboxEntry.objects.filter(id__in=[g[0] for g in gaps]).order_by("id"))
        entries.extend(found)
        got = {e.id for e in found}
        gaps = [g for g in gaps if g[0] not in got]
    position = st.position
    for entry in OutboxEntry.objects.filter(id__gt=position).order_by("id")[:limit]:
        if position == 0:
            # A consumer's first read starts at the oldest entry there is (ids below it were
            # pruned, or the sequence started higher): no gap to wait for.
            position = entry.id - 1
        if entry.id != position + 1:
            if now - entry.created_at < grace:
                break  # the missing ids may belong to transactions still committing
            gaps.extend(
                [i, now.isoformat()] for i in range(position + 1, min(entry.id, position + 1001))
            )
        entries.append(entry)
        position = entry.id
    return entries, position, gaps


def activity_ids(entries: list[OutboxEntry]) -> list[str]:
    ids: list[str] = []
    for entry in entries:
        if entry.kind == OutboxEntry.Kind.ACTIVITIES and entry.activity_ids:
            ids.extend(entry.activity_ids.split(","))
    return ids


def backlog(position: int) -> int:
    """Activities and blocks in entries after ``position`` (what a consumer has not taken)."""
    pending = OutboxEntry.objects.filter(id__gt=position)
    activities = pending.filter(kind=OutboxEntry.Kind.ACTIVITIES).aggregate(n=Sum("count"))["n"]
    return int(activities or 0) + pending.exclude(kind=OutboxEntry.Kind.ACTIVITIES).count()


def prune(names: list[str]) -> int:
    """Delete entries every configured consumer has consumed; returns how many."""
    if not names:
        return 0
    states = list(DeliveryState.objects.filter(name__in=names).values_list("position", "gaps"))
    if len(states) < len(names):
        return 0  # a consumer that has not started yet still needs everything
    low = min(p for p, _ in states)
    for _, gaps in states:
        for gap in gaps or []:
            low = min(low, gap[0] - 1)
    if low <= 0:
        return 0
    with transaction.atomic():
        deleted, _ = OutboxEntry.objects.filter(id__lte=low).delete()
    return deleted
