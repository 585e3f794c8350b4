"""One alert channel's round: fold new outbox entries into groups, send the groups that are due.

Grouping: a flagged activity joins the open group of its rule (its strongest finding's
detector) and source (its address, else its user name) on this channel, or opens one that is
sent ``group_seconds`` later; a block is a group of its own, sent at once. Folding and
advancing the channel's position happen in one transaction, so an entry is grouped exactly
once. Sending respects the rate limit (messages wait, they are not dropped), retries with
exponential backoff from ``retry_seconds`` and, after ``max_attempts``, keeps the message as a
dead letter (counted in health, ``tracking doctor`` and the dashboard).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import F, Q

from detectors.base import SEVERITY_RANK
from tracking.alerts.messages import activity_item, build, top_severity
from tracking.delivery import outbox
from tracking.delivery.config import Channel
from tracking.models import (
    Activity,
    DeliveryState,
    Finding,
    OutboxEntry,
    PendingAlert,
)

logger = logging.getLogger("tracking.alerts")

READ_LIMIT = 200  # outbox entries folded per round
SEND_LIMIT = 100  # messages sent per round
GROUP_LIMIT = 200  # activities listed by one message; more open a new group
MAX_BACKOFF = 3600.0
_SUMMARY = (
    "id", "timestamp", "type", "username", "ip_address", "asn", "isp", "country", "city",
    "tags", "severity", "risk_score", "flagged",
)  # fmt: skip


def _summary_fields() -> tuple[str, ...]:
    # ``outcome`` is read when the model has it (added by the outcome feature).
    names = {f.name for f in Activity._meta.concrete_fields}
    return _SUMMARY + (("outcome",) if "outcome" in names else ())


def run(channel: Channel, now: datetime) -> tuple[int, str]:
    """Fold and send for ``channel``; returns the messages sent (none when another process
    holds the channel's lease) and the error of a failed send, or ""."""
    st = outbox.claim(channel.state_name, now)
    if st is None:
        return 0, ""
    try:
        fold(channel, st, now)
        return send_due(channel, st, now)
    finally:
        outbox.release(st)


def _flagged(ids: list[str]) -> tuple[dict[str, Activity], dict[str, list[Finding]]]:
    acts: dict[str, Activity] = {}
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        for act in Activity.objects.filter(id__in=chunk, flagged=True).only(*_summary_fields()):
            acts[str(act.id)] = act
    findings: dict[str, list[Finding]] = {}
    keys = list(acts)
    for i in range(0, len(keys), 500):
        for f in Finding.objects.filter(activity_id__in=keys[i : i + 500]):
            findings.setdefault(str(f.activity_id), []).append(f)
    return acts, findings


def _rule(findings: list[Finding], activity: Activity) -> str:
    active = [f for f in findings if not f.suppressed]
    if active:
        top = max(active, key=lambda f: (f.flag, SEVERITY_RANK.get(f.severity, 0), f.score))
        return top.detector
    return (sorted(activity.tags or []) or ["flagged"])[0]


def _add(
    channel: Channel,
    kind: str,
    key: str,
    item: dict[str, Any],
    severity: str,
    now: datetime,
    send_after: datetime,
) -> None:
    group = (
        PendingAlert.objects.filter(
            channel=channel.name, status=PendingAlert.Status.PENDING, key=key, send_after__gt=now
        )
        .order_by("-id")
        .first()
    )
    if group is not None and len(group.items) < GROUP_LIMIT:
        group.items.append(item)
        group.severity = top_severity([group.severity, severity])
        group.save(update_fields=["items", "severity"])
        return
    PendingAlert.objects.create(
        channel=channel.name, key=key[:300], kind=kind, opened_at=now, send_after=send_after,
        items=[item], severity=severity,
    )  # fmt: skip


def fold(channel: Channel, st: DeliveryState, now: datetime) -> None:
    entries, position, gaps = outbox.read(st, READ_LIMIT, now)
    if not entries and position == st.position and gaps == (st.gaps or []):
        return
    acts, findings = _flagged(outbox.activity_ids(entries))
    window = now + timedelta(seconds=channel.group_seconds)
    with transaction.atomic():
        for entry in entries:
            if entry.kind == OutboxEntry.Kind.ACTIVITIES:
                for ident in entry.activity_ids.split(","):
                    act = acts.get(ident)
                    if act is None or not channel.wants(act.severity, act.type, act.tags):
                        continue
                    found = findings.get(ident, [])
                    rule = _rule(found, act)
                    source = act.ip_address or act.username or "-"
                    key = f"findings|{rule}|{source}"
                    _add(
                        channel,
                        "findings",
                        key,
                        activity_item(act, found),
                        act.severity,
                        now,
                        window,
                    )
            elif channel.blocks:
                payload = dict(entry.payload)
                severity = payload.get("severity")
                if severity not in SEVERITY_RANK or not severity:
                    severity = "high" if entry.kind == OutboxEntry.Kind.BLOCK_CREATED else "medium"
                if SEVERITY_RANK[severity] >= SEVERITY_RANK[channel.min_severity]:
                    key = f"{entry.kind}|{entry.id}"
                    _add(channel, entry.kind, key, payload, severity, now, now)
        DeliveryState.objects.filter(pk=st.pk).update(position=position, gaps=gaps)
    st.position, st.gaps = position, gaps


def _split_key(key: str) -> tuple[str, str]:
    parts = key.split("|", 2)
    return (parts[1], parts[2]) if len(parts) == 3 else ("", "")


def send_due(channel: Channel, st: DeliveryState, now: datetime) -> tuple[int, str]:
    due = PendingAlert.objects.filter(
        Q(next_attempt__isnull=True) | Q(next_attempt__lte=now),
        channel=channel.name,
        status=PendingAlert.Status.PENDING,
        send_after__lte=now,
    ).order_by("send_after", "id")[:SEND_LIMIT]
    st.refresh_from_db(fields=["window_start", "window_count"])
    window_start, window_count, sent, error = st.window_start, st.window_count, 0, ""
    for alert in due:
        if channel.rate is not None:
            limit, period = channel.rate
            if window_start is None or (now - window_start).total_seconds() >= period:
                window_start, window_count = now, 0
            if window_count >= limit:
                break  # the rest waits for the next window
        rule, source = _split_key(alert.key) if alert.kind == "findings" else ("", "")
        message = build(
            channel=channel.name, kind=alert.kind, rule=rule, source=source, items=alert.items,
            severity=alert.severity,
        )  # fmt: skip
        try:
            channel.backend.send(message)
        except Exception as exc:  # any backend failure is retried, then dead-lettered
            error = _failed(channel, st, alert, exc, now)
            break  # the receiver is probably down: the rest waits for the retry
        alert.delete()
        sent += 1
        window_count += 1
    changes: dict[str, Any] = {"window_start": window_start, "window_count": window_count}
    if sent:
        changes.update(last_delivery=now, delivered=F("delivered") + sent)
    DeliveryState.objects.filter(pk=st.pk).update(**changes)
    return sent, error


def _failed(
    channel: Channel, st: DeliveryState, alert: PendingAlert, exc: Exception, now: datetime
) -> str:
    error = f"{type(exc).__name__}: {exc}"[:500]
    alert.attempts += 1
    alert.last_error = error
    if alert.attempts >= channel.max_attempts:
        alert.status = str(PendingAlert.Status.DEAD)
        logger.error(
            "alert to %s given up after %d attempts: %s", channel.name, alert.attempts, error
        )
    else:
        delay = min(channel.retry_seconds * 2 ** (alert.attempts - 1), MAX_BACKOFF)
        alert.next_attempt = now + timedelta(seconds=delay)
        logger.warning("alert to %s failed (attempt %d): %s", channel.name, alert.attempts, error)
    alert.save(update_fields=["attempts", "last_error", "status", "next_attempt"])
    DeliveryState.objects.filter(pk=st.pk).update(
        failures=F("failures") + 1, last_failure=now, last_error=error
    )
    return error
