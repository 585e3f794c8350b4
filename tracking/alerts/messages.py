"""What an alert says: one JSON-safe message per group, and its text for people.

A message names the activities (id, time, type, user, address, network, place, tags,
severity, risk, the findings' reasons and a link to the dashboard's detail page) or the block;
never headers, params, session hashes or anything else of the request's content.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.urls import NoReverseMatch, reverse
from django.utils.translation import gettext_lazy as _

from detectors.base import SEVERITY_RANK
from tracking.activity_types import type_label
from tracking.conf import tracking_settings

MAX_REASONS = 5


def detail_link(activity_id: str) -> str:
    """Absolute link to the dashboard's detail page (``TRACKING_SITE_URL`` + the path)."""
    try:
        path = reverse("tracking:dashboard:activity", args=[activity_id])
    except NoReverseMatch:
        return ""
    return f"{str(tracking_settings.SITE_URL or '').rstrip('/')}{path}"


def activity_item(activity: Any, findings: list[Any]) -> dict[str, Any]:
    """The summary of one flagged activity an alert lists."""
    ts = activity.timestamp
    return {
        "id": str(activity.id),
        "timestamp": ts.isoformat() if isinstance(ts, datetime) else str(ts),
        "type": activity.type,
        "user": activity.username or "",
        "ip": activity.ip_address or "",
        "network": {"asn": activity.asn, "isp": activity.isp or ""},
        "country": activity.country or "",
        "city": activity.city or "",
        "tags": sorted(activity.tags or []),
        "severity": activity.severity or "",
        "risk": round(float(activity.risk_score or 0.0), 4),
        "outcome": getattr(activity, "outcome", "") or "",
        "reasons": [f.reason for f in findings if not f.suppressed][:MAX_REASONS],
        "link": detail_link(str(activity.id)),
    }


def top_severity(severities: list[str]) -> str:
    return max(severities, key=lambda s: SEVERITY_RANK.get(s or "", 0), default="")


def build(
    *, channel: str, kind: str, rule: str, source: str, items: list[dict[str, Any]], severity: str
) -> dict[str, Any]:
    """The message of one pending alert (what every backend sends, in its own shape)."""
    message: dict[str, Any] = {
        "channel": channel,
        "kind": kind,
        "severity": severity,
        "rule": rule,
        "source": source,
    }
    if kind == "findings":
        stamps = sorted(i["timestamp"] for i in items)
        message.update(
            count=len(items),
            first_seen=stamps[0] if stamps else "",
            last_seen=stamps[-1] if stamps else "",
            activities=items,
        )
    else:
        message["block"] = items[0] if items else {}
    message["title"] = str(title(message))
    return message


def title(message: dict[str, Any]) -> str:
    sev = (message.get("severity") or "none").upper()
    if message["kind"] == "block_created":
        return _("[%(sev)s] Block created: %(what)s") % {
            "sev": sev,
            "what": message["block"].get("description", ""),
        }
    if message["kind"] == "block_lifted":
        return _("[%(sev)s] Block lifted: %(what)s") % {
            "sev": sev,
            "what": message["block"].get("description", ""),
        }
    return _("[%(sev)s] %(count)d flagged %(noun)s: %(rule)s from %(source)s") % {
        "sev": sev,
        "count": message["count"],
        "noun": _("activity") if message["count"] == 1 else _("activities"),
        "rule": message["rule"],
        "source": message["source"] or "-",
    }


def _network(item: dict[str, Any]) -> str:
    net = item.get("network") or {}
    asn = f"AS{net['asn']}" if net.get("asn") else ""
    return " ".join(p for p in (asn, net.get("isp") or "") if p) or "-"


def activity_line(item: dict[str, Any]) -> str:
    place = ", ".join(p for p in (item.get("city"), item.get("country")) if p) or "-"
    return (
        f"{item['timestamp']} {type_label(item['type'])} user={item['user'] or '-'} "
        f"ip={item['ip'] or '-'} network={_network(item)} place={place} "
        f"severity={item['severity'] or '-'} risk={item['risk']:.2f} "
        f"tags={','.join(item['tags']) or '-'} id={item['id']}"
    )


def text(message: dict[str, Any]) -> str:
    """Plain text of a message (email body, logs)."""
    lines = [message["title"], ""]
    if message["kind"] == "findings":
        for item in message["activities"]:
            lines.append(activity_line(item))
            for reason in item.get("reasons") or []:
                lines.append(f"    {reason}")
            if item.get("link"):
                lines.append(f"    {item['link']}")
    else:
        for key, value in sorted(message["block"].items()):
            lines.append(f"{key}: {value}")
    return "\n".join(lines)
