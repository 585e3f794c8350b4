"""State of every alert channel and forwarder: what health, ``tracking doctor`` and the
dashboard show (last delivery, backlog, failures, dead letters)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Count, Q

from tracking.conf import tracking_settings
from tracking.delivery import config, hooks, outbox
from tracking.models import DeliveryState, PendingAlert, Seal


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def consumers() -> list[dict[str, Any]]:
    """One row per configured channel and forwarder."""
    if not config.configured():
        return []
    channels = config.channels()
    forwarders = config.forwarders()
    names = [c.state_name for c in channels] + [f.state_name for f in forwarders]
    states = {s.name: s for s in DeliveryState.objects.filter(name__in=names)}
    alerts = {
        row["channel"]: row
        for row in PendingAlert.objects.filter(channel__in=[c.name for c in channels])
        .values("channel")
        .annotate(
            pending=Count("id", filter=Q(status=PendingAlert.Status.PENDING)),
            dead=Count("id", filter=Q(status=PendingAlert.Status.DEAD)),
        )
    }
    head = Seal.objects.order_by("-last_seq").values_list("last_seq", flat=True).first() or 0
    rows = []
    for kind, name, backend, state_name in [
        ("alert", c.name, type(c.backend).__name__, c.state_name) for c in channels
    ] + [("forwarder", f.name, type(f.transport).__name__, f.state_name) for f in forwarders]:
        st = states.get(state_name) or DeliveryState(name=state_name)
        row = {
            "kind": kind,
            "name": name,
            "backend": backend,
            "last_delivery": _iso(st.last_delivery),
            "last_failure": _iso(st.last_failure),
            "last_error": st.last_error,
            "delivered": st.delivered,
            "failures": st.failures,
            "backlog": outbox.backlog(st.position),
            "dead_letters": 0,
            "next_attempt": _iso(st.next_attempt),
            "failing": bool(
                st.last_failure and (not st.last_delivery or st.last_failure > st.last_delivery)
            ),
        }
        if kind == "alert":
            counts = alerts.get(name, {})
            row["pending_messages"] = counts.get("pending", 0)
            row["dead_letters"] = counts.get("dead", 0)
        else:
            row["unforwarded_seals"] = max(0, head - st.seal_position)
        rows.append(row)
    return rows


def health() -> tuple[dict[str, Any], list[str]]:
    """``(info, warnings)`` for ``tracking.health.collect``."""
    signal_stats = hooks.stats()
    rows = consumers()
    warnings: list[str] = []
    if signal_stats["receiver_failures"]:
        warnings.append(
            f"{signal_stats['receiver_failures']} tracking signal receivers raised in this "
            f"process (last: {signal_stats['last_error']}); the records were kept"
        )
    for row in rows:
        if row["dead_letters"]:
            warnings.append(
                f"alert channel {row['name']}: {row['dead_letters']} dead letters "
                f"(last error: {row['last_error'] or '-'})"
            )
        if row["failing"]:
            warnings.append(
                f"{row['kind']} {row['name']} is failing (backlog {row['backlog']}, last "
                f"error: {row['last_error'] or '-'}); retrying"
            )
    for setting, problem in config.problems():
        warnings.append(f"{setting}: {problem}")
    dead = sum(r["dead_letters"] for r in rows)
    return {
        "signals": signal_stats,
        "consumers": rows,
        "dead_letters": dead,
        "delivery": tracking_settings.DELIVERY,
    }, warnings
