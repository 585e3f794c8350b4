"""Extension points, sent after the transaction that stored the change commits.

Receivers run in whichever process wrote (request, writer thread, Celery worker, import);
a receiver that raises is logged and counted in health, and never loses or rolls back a record.

The activity signals are sent with ``sender=Activity`` (the model class).

- ``activity_recorded(sender, activities)``: every stored activity of a batch.
- ``activity_flagged(sender, activity, findings)``: each newly flagged activity.
- ``activity_reviewed(sender, activity, review)``: a review decision was stored.
- ``block_created(sender, block)`` / ``block_lifted(sender, block, by, reason)``.
"""

from __future__ import annotations

from django.dispatch import Signal

activity_recorded = Signal()
activity_flagged = Signal()
activity_reviewed = Signal()
block_created = Signal()
block_lifted = Signal()

__all__ = [
    "activity_flagged",
    "activity_recorded",
    "activity_reviewed",
    "block_created",
    "block_lifted",
]
