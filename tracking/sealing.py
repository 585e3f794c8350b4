"""Hash-chain sealing, tombstones and verification.

CONTRACT (owned by the integrity work):
- ``seal_pending(limit=None) -> int``: seal unsealed activities in order; returns how many.
- ``delete_activities(ids, *, reason, by="") -> int``: the application's deletion path:
  writes a signed Tombstone per row, then deletes the rows and their findings.
"""

from __future__ import annotations

from collections.abc import Iterable

from .models import Activity, Finding


def seal_pending(limit: int | None = None) -> int:
    return 0


def delete_activities(ids: Iterable, *, reason: str, by: str = "") -> int:
    ids = list(ids)
    Finding.objects.filter(activity_id__in=ids).delete()
    deleted, _ = Activity.objects.filter(id__in=ids).delete()
    return deleted
