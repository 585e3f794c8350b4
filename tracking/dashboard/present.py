"""Activities as the dashboard shows them: one-line reasons and a compact JSON row."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from django.db.models import Prefetch
from django.urls import reverse

from tracking.models import Activity, Finding, NetworkKind


def open_findings() -> Prefetch:
    """Prefetch of the findings a reviewer should read (suppressed ones are audit-only)."""
    return Prefetch(
        "findings",
        queryset=Finding.objects.filter(suppressed=False).order_by("-score", "detector"),
        to_attr="shown_findings",
    )


def reasons_for(ids: Iterable[Any]) -> dict[str, list[dict[str, Any]]]:
    """Unsuppressed findings per activity id (as str), highest score first, one query."""
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    rows = (
        Finding.objects.filter(activity_id__in=list(ids), suppressed=False)
        .order_by("-score", "detector")
        .values("activity_id", "detector", "tag", "score", "severity", "reason")
    )
    for row in rows:
        out[str(row.pop("activity_id"))].append(row)
    return out


def network(activity: Activity) -> str:
    if activity.asn and activity.isp:
        text = f"AS{activity.asn} {activity.isp}"
    elif activity.asn:
        text = f"AS{activity.asn}"
    else:
        text = activity.isp
    kind = getattr(activity, "network_kind", "")
    if kind:
        text = f"{text} · {NetworkKind(kind).label}" if text else str(NetworkKind(kind).label)
    return text


def device(activity: Activity) -> str:
    parts = [p for p in (activity.device, activity.os, activity.browser) if p and p != "Other"]
    return " · ".join(parts)


def row(activity: Activity, reasons: list[dict[str, Any]]) -> dict[str, Any]:
    """The compact JSON of one activity for the live feed and the queue."""
    return {
        "id": str(activity.pk),
        "timestamp": activity.timestamp.isoformat(),
        "type": activity.type,
        "type_display": activity.type_display,
        "username": activity.username,
        "user": activity.user_id,
        "ip_address": activity.ip_address,
        "city": activity.city,
        "country": activity.country,
        "asn": activity.asn,
        "isp": activity.isp,
        "network": network(activity),
        "network_kind": activity.network_kind,
        "device": device(activity),
        "endpoint": activity.endpoint,
        "method": activity.method,
        "status": activity.status,
        "outcome": activity.outcome,
        "flagged": activity.flagged,
        "tags": list(activity.tags),
        "risk_score": round(activity.risk_score or 0.0, 3),
        "severity": activity.severity,
        "severity_display": str(activity.get_severity_display()),
        "review_status": activity.review_status,
        "reasons": [r["reason"] for r in reasons],
        "url": reverse("tracking:dashboard:activity", args=[activity.pk]),
    }


def feature_table(evidence: Any) -> dict[str, Any] | None:
    """Per-feature evidence (risk score, outlier detectors) as a table: which features drove it.

    Detectors report ``{"features": {name: {column: value}}}`` and optionally ``"drivers"``
    (names, strongest first); anything else is shown as raw JSON only.
    """
    if not isinstance(evidence, dict):
        return None
    features = evidence.get("features")
    if not isinstance(features, dict) or not features:
        return None
    if not all(isinstance(v, dict) for v in features.values()):
        return None
    # A stable order on every database (PostgreSQL's jsonb does not keep key order).
    names = {str(c) for values in features.values() for c in values}
    columns = [c for c in ("value",) if c in names] + sorted(names - {"value"})
    drivers = evidence.get("drivers")
    drivers = [d for d in drivers if isinstance(d, str)] if isinstance(drivers, list) else []
    order = drivers + [name for name in features if name not in drivers]
    rows = [
        {
            "name": name,
            "driver": name in drivers,
            "cells": [features[name].get(c, "") for c in columns],
        }
        for name in order
        if name in features
    ]
    return {"columns": columns, "rows": rows}
