"""Glue between the writer and the detection engine in ``detectors/``.

CONTRACT (owned by the detection work; the writer only calls ``detect_batch``):

``detect_batch(activities)`` receives unsaved, enriched and redacted ``Activity`` instances
of one batch, in timestamp order, inside the writer's transaction. It sets on each
``tags``, ``risk_score``, ``severity``, ``flagged`` (and ``review_status``), updates the
per-user ``Profile`` rows, and returns the unsaved ``Finding`` objects to insert.
"""

from __future__ import annotations

from .models import Activity, Finding


def detect_batch(activities: list[Activity]) -> list[Finding]:
    return []


def on_review(activity: Activity, status: str) -> None:
    """Called by the review path after a verdict. A "dismissed" verdict teaches the user's
    profile (the place/network/device becomes known); "confirmed" is kept as a label."""
