"""One forwarder's round, and replays of a time range.

A round takes the outbox entries after the forwarder's position (activities and blocks) and
the seal heads after its seal position, sends them in batches of ``batch_size`` and only then
advances both positions. A failure keeps the positions: the same lines go out again at the
next attempt (backoff from ``retry_seconds`` doubling up to 5 minutes), so an outage delays
and never drops, and a restarted process resumes where the last one stopped (at least once:
a receiver deduplicates by the id every line carries).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta

from django.db.models import F, Q

from tracking.delivery import outbox
from tracking.delivery.config import Forwarder
from tracking.forwarding.message import Message
from tracking.models import Activity, DeliveryState, OutboxEntry, Seal

logger = logging.getLogger("tracking.forwarding")

READ_LIMIT = 20  # outbox entries per batch (a writer's entry may hold hundreds of rows)
SEAL_LIMIT = 200
MAX_BATCHES = 50  # per round, so one forwarder cannot starve the others
MAX_BACKOFF = 300.0


def activity_message(fwd: Forwarder, activity: Activity) -> Message:
    findings = list(activity.findings.all())
    return Message(
        kind="activity",
        id=str(activity.id),
        timestamp=activity.timestamp,
        text=fwd.format.activity(activity, findings),
        severity=activity.severity or "",
    )


def seal_message(fwd: Forwarder, seal: Seal) -> Message:
    return Message(
        kind="seal",
        id=f"seal-{seal.last_seq}",
        timestamp=seal.created_at,
        text=fwd.format.seal(seal),
    )


def _activities(ids: list[str]) -> dict[str, Activity]:
    found: dict[str, Activity] = {}
    for i in range(0, len(ids), 500):
        for act in Activity.objects.filter(id__in=ids[i : i + 500]).prefetch_related("findings"):
            found[str(act.id)] = act
    return found


def messages_for(fwd: Forwarder, entries: list[OutboxEntry]) -> list[Message]:
    """The lines of ``entries`` in outbox order (activities deleted meanwhile are skipped)."""
    acts = _activities(outbox.activity_ids(entries))
    out: list[Message] = []
    for entry in entries:
        if entry.kind == OutboxEntry.Kind.ACTIVITIES:
            for ident in entry.activity_ids.split(","):
                act = acts.get(ident)
                if act is not None:
                    out.append(activity_message(fwd, act))
        else:
            text = fwd.format.block(entry.kind, entry.id, dict(entry.payload), entry.created_at)
            severity = "high" if entry.kind == OutboxEntry.Kind.BLOCK_CREATED else "low"
            out.append(Message(entry.kind, f"block-{entry.id}", entry.created_at, text, severity))
    return out


def _send(fwd: Forwarder, messages: list[Message]) -> None:
    for i in range(0, len(messages), fwd.batch_size):
        fwd.transport.send(messages[i : i + fwd.batch_size])


def run(fwd: Forwarder, now: datetime) -> tuple[int, str]:
    """Forward what is new; returns the lines sent (none when another process holds the
    lease or the forwarder is waiting to retry) and the error of a failed send, or ""."""
    st = outbox.claim(fwd.state_name, now)
    if st is None:
        return 0, ""
    sent, error = 0, ""
    try:
        if st.next_attempt is not None and st.next_attempt > now:
            return 0, ""
        for _ in range(MAX_BATCHES):
            entries, position, gaps = outbox.read(st, READ_LIMIT, now)
            seals = list(
                Seal.objects.filter(last_seq__gt=st.seal_position).order_by("last_seq")[:SEAL_LIMIT]
            )
            if not entries and not seals and position == st.position and gaps == (st.gaps or []):
                break
            messages = messages_for(fwd, entries) + [seal_message(fwd, s) for s in seals]
            _send(fwd, messages)
            seal_position = seals[-1].last_seq if seals else st.seal_position
            DeliveryState.objects.filter(pk=st.pk).update(
                position=position, seal_position=seal_position, gaps=gaps, last_delivery=now,
                delivered=F("delivered") + len(messages), attempts=0, next_attempt=None,
            )  # fmt: skip
            st.position, st.seal_position, st.gaps = position, seal_position, gaps
            sent += len(messages)
    except Exception as exc:  # any failure keeps the position: retried later
        error = _failed(fwd, st, exc, now)
    finally:
        outbox.release(st)
    return sent, error


def _failed(fwd: Forwarder, st: DeliveryState, exc: Exception, now: datetime) -> str:
    error = f"{type(exc).__name__}: {exc}"[:500]
    attempts = st.attempts + 1
    delay = min(fwd.retry_seconds * 2 ** (attempts - 1), MAX_BACKOFF)
    logger.warning(
        "forwarder %s failed (attempt %d, next in %.0f s): %s", fwd.name, attempts, delay, error
    )
    DeliveryState.objects.filter(pk=st.pk).update(
        failures=F("failures") + 1, attempts=attempts, last_failure=now, last_error=error,
        next_attempt=now + timedelta(seconds=delay),
    )  # fmt: skip
    st.attempts = attempts
    return error


def _range(since: datetime, until: datetime | None, size: int) -> Iterator[list[Activity]]:
    base = Activity.objects.filter(timestamp__gte=since)
    if until is not None:
        base = base.filter(timestamp__lt=until)
    base = base.order_by("timestamp", "id").prefetch_related("findings")
    last = None
    while True:
        qs = (
            base
            if last is None
            else base.filter(Q(timestamp__gt=last[0]) | Q(timestamp=last[0], id__gt=last[1]))
        )
        chunk = list(qs[:size])
        if not chunk:
            return
        yield chunk
        last = (chunk[-1].timestamp, chunk[-1].id)


def replay(
    fwd: Forwarder, since: datetime, until: datetime | None = None, *, seals: bool = True
) -> int:
    """Send every activity stored with a timestamp in ``[since, until)`` (and the seals made
    then) again, in timestamp order; the forwarder's positions are not touched. Raises on the
    first failed batch (what was sent before it stays sent)."""
    sent = 0
    for chunk in _range(since, until, fwd.batch_size):
        fwd.transport.send([activity_message(fwd, a) for a in chunk])
        sent += len(chunk)
    if seals:
        found = Seal.objects.filter(created_at__gte=since)
        if until is not None:
            found = found.filter(created_at__lt=until)
        batch = [seal_message(fwd, s) for s in found.order_by("last_seq")]
        for i in range(0, len(batch), fwd.batch_size):
            fwd.transport.send(batch[i : i + fwd.batch_size])
        sent += len(batch)
    return sent
