"""Where the pipeline tells the world: the outbox entry of a batch and the signals.

``batch_written(activities, findings)`` is called by ``tracking.pipeline.ingest`` inside the
transaction that stores a batch (every hand-off and import goes through it): it adds the batch's
outbox entry (when an alert channel or forwarder is configured) so the entry commits exactly
with the rows, and registers the signals to be sent once the transaction commits.

Receivers are called with ``send_robust``: one that raises is logged (logger
``tracking.signals``) and counted (``stats()``, shown by health), and the record stays stored.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.db import transaction
from django.dispatch import Signal, receiver

from tracking import signals
from tracking.delivery import config, runner
from tracking.models import Activity, OutboxEntry

logger = logging.getLogger("tracking.signals")

_lock = threading.Lock()
_counters: dict[str, Any] = {"sent": 0, "receiver_failures": 0, "last_error": ""}
# Block fields never copied into a message (a block model may hold whatever its author chose).
_SECRET_WORDS = ("secret", "token", "password", "session", "key", "header", "param")


def stats() -> dict[str, Any]:
    """Signals sent by this process and receivers that raised (for health)."""
    with _lock:
        return dict(_counters)


def send(signal: Signal, sender: Any = Activity, **kwargs: Any) -> None:
    """Send ``signal`` (sender: the ``Activity`` model); a receiver that raises is logged and
    counted, never propagated."""
    results = signal.send_robust(sender=sender, **kwargs)
    failures = [(r, e) for r, e in results if isinstance(e, Exception)]
    with _lock:
        _counters["sent"] += 1
        _counters["receiver_failures"] += len(failures)
        if failures:
            _counters["last_error"] = f"{type(failures[-1][1]).__name__}: {failures[-1][1]}"[:300]
    for rcv, exc in failures:
        logger.error(
            "a receiver of a tracking signal raised (the record is kept): %r",
            rcv,
            exc_info=(type(exc), exc, exc.__traceback__),
        )


def batch_written(activities: Sequence[Any], findings: Sequence[Any]) -> None:
    """Inside the batch's transaction: its outbox entry now, its signals after the commit."""
    if not activities:
        return
    if config.configured():
        OutboxEntry.objects.create(
            kind=OutboxEntry.Kind.ACTIVITIES,
            activity_ids=",".join(str(a.id) for a in activities),
            count=len(activities),
        )
    acts = list(activities)
    found = list(findings)
    transaction.on_commit(lambda: batch_committed(acts, found))


def batch_committed(activities: list[Any], findings: list[Any]) -> None:
    """After the commit: ``activity_recorded`` for the batch, ``activity_flagged`` per newly
    flagged activity with its findings, and a nudge to the deliverer."""
    try:
        send(signals.activity_recorded, activities=activities)
        by_activity: dict[Any, list] = {}
        for finding in findings:
            by_activity.setdefault(finding.activity_id, []).append(finding)
        for activity in activities:
            if activity.flagged:
                send(
                    signals.activity_flagged,
                    activity=activity,
                    findings=by_activity.get(activity.id, []),
                )
    finally:
        if config.configured():
            runner.wake()


def review_committed(activity: Any, review: Any) -> None:
    """``activity_reviewed`` once the review's transaction commits."""
    transaction.on_commit(lambda: send(signals.activity_reviewed, activity=activity, review=review))


def _json_safe(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID | Decimal):
        return str(value)
    return str(value)[:200]


def block_payload(block: Any) -> dict[str, Any]:
    """The fields of a block (a model instance or any object) that may leave the box."""
    meta = getattr(block, "_meta", None)
    if meta is not None:
        names = [f.attname for f in meta.concrete_fields]
    else:
        names = [
            n for n in dir(block) if not n.startswith("_") and not callable(getattr(block, n, None))
        ]
    payload = {}
    for name in names:
        if any(word in name.lower() for word in _SECRET_WORDS):
            continue
        payload[name] = _json_safe(getattr(block, name, None))
    payload["description"] = str(block)[:300]
    return payload


def _block_entry(kind: str, block: Any, **extra: Any) -> None:
    if not config.configured():
        return
    payload = block_payload(block)
    payload.update({k: _json_safe(v) for k, v in extra.items()})
    OutboxEntry.objects.create(kind=kind, payload=payload)
    transaction.on_commit(runner.wake)


@receiver(signals.block_created, dispatch_uid="tracking.delivery.block_created")
def _on_block_created(sender: Any, block: Any, **kwargs: Any) -> None:
    _block_entry(str(OutboxEntry.Kind.BLOCK_CREATED), block)


@receiver(signals.block_lifted, dispatch_uid="tracking.delivery.block_lifted")
def _on_block_lifted(
    sender: Any, block: Any, by: Any = "", reason: str = "", **kwargs: Any
) -> None:
    by_name = by.get_username() if hasattr(by, "get_username") else (by or "")
    _block_entry(str(OutboxEntry.Kind.BLOCK_LIFTED), block, lifted_by=by_name, lift_reason=reason)
