"""Forwarding formats: each turns an activity (with its findings), a seal head or a block into
one line of text. Nothing of the request's content (headers, params) and no session hash is
ever part of a forwarded line.

- ``cef``: ArcSight CEF:0. Header fields escape ``\\`` and ``|``; extension values escape
  ``\\``, ``=`` and line breaks (``\\n``, ``\\r``); other control characters are dropped, so a
  hostile value can neither add a key nor start a new syslog line.
- ``ecs``: an Elastic Common Schema document (JSON).
- ``json``: the export record (``tracking.export.record.activity_record``) without headers
  and params; seals and blocks carry ``record_type``.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from tracking import __version__
from tracking.activity_types import type_label
from tracking.export.record import activity_record

VENDOR, PRODUCT = "Django Activity Tracking", "tracking"
ECS_VERSION = "8.11.0"
CEF_SEVERITY = {"": 1, "low": 3, "medium": 5, "high": 8, "critical": 10}
ECS_SEVERITY = {"": 0, "low": 21, "medium": 47, "high": 73, "critical": 99}
AUTH_TYPES = frozenset({"AUTH", "LOGIN", "LOGOUT", "LOGIN_FAILED"})
_CONTROL = re.compile(r"[\x00-\x09\x0b\x0c\x0e-\x1f\x7f\u2028\u2029]")
_LEFT_OUT = ("headers", "params", "session_id")


def _ms(ts: datetime) -> int:
    return int(ts.timestamp() * 1000)


def _iso(ts: datetime) -> str:
    return ts.isoformat()


def cef_header(value: Any) -> str:
    text = _CONTROL.sub("", str(value)).replace("\r", " ").replace("\n", " ")
    return text.replace("\\", "\\\\").replace("|", "\\|")


def cef_value(value: Any) -> str:
    text = _CONTROL.sub("", str(value)).replace("\\", "\\\\").replace("=", "\\=")
    return text.replace("\r", "\\r").replace("\n", "\\n")


def cef_line(signature: str, name: str, severity: int, ext: list[tuple[str, Any]]) -> str:
    head = "|".join(
        cef_header(v) for v in ("CEF:0", VENDOR, PRODUCT, __version__, signature, name, severity)
    )
    body = " ".join(f"{k}={cef_value(v)}" for k, v in ext if v not in (None, ""))
    return f"{head}|{body}"


def _outcome(activity: Any) -> str:
    return getattr(activity, "outcome", "") or ""


class CefFormat:
    name = "cef"

    def activity(self, activity: Any, findings: list[Any]) -> str:
        tags = ",".join(sorted(activity.tags or []))
        reasons = "; ".join(f.reason for f in findings if not f.suppressed)[:1000]
        network = " ".join(
            p for p in (f"AS{activity.asn}" if activity.asn else "", activity.isp) if p
        )
        ext = [
            ("rt", _ms(activity.timestamp)),
            ("externalId", activity.id),
            ("cat", activity.type),
            ("src", activity.ip_address),
            ("suser", activity.username),
            ("requestMethod", activity.method),
            ("request", activity.endpoint),
            ("requestClientApplication", activity.user_agent),
            ("outcome", _outcome(activity)),
            ("cn1Label", "httpStatus" if activity.status is not None else ""),
            ("cn1", activity.status),
            ("cs1Label", "tags"),
            ("cs1", tags),
            ("cs2Label", "risk"),
            ("cs2", f"{float(activity.risk_score or 0):.4f}"),
            ("cs3Label", "network" if network else ""),
            ("cs3", network),
            ("cs4Label", "country" if activity.country else ""),
            ("cs4", activity.country),
            ("cs5Label", "findings" if reasons else ""),
            ("cs5", reasons),
            ("cs6Label", "flagged"),
            ("cs6", "true" if activity.flagged else "false"),
        ]
        return cef_line(
            activity.type,
            type_label(activity.type),
            CEF_SEVERITY.get(activity.severity or "", 1),
            ext,
        )

    def seal(self, seal: Any) -> str:
        ext = [
            ("rt", _ms(seal.created_at)),
            ("externalId", seal.last_seq),
            ("cs1Label", "chainHash"),
            ("cs1", seal.chain_hash),
            ("cs2Label", "prevHash"),
            ("cs2", seal.prev_hash),
            ("cs3Label", "sealMac"),
            ("cs3", seal.mac),
            ("cn1Label", "firstSeq"),
            ("cn1", seal.first_seq),
            ("cn2Label", "count"),
            ("cn2", seal.count),
        ]
        return cef_line("SEAL", "Seal head", 1, ext)

    def block(self, kind: str, entry_id: int, payload: dict[str, Any], created: datetime) -> str:
        ext = [("rt", _ms(created)), ("externalId", f"block-{entry_id}"), ("cat", kind)]
        ext += [("msg", payload.get("description", ""))]
        return cef_line(
            kind.upper(),
            kind.replace("_", " ").capitalize(),
            8 if kind == "block_created" else 3,
            ext,
        )


class EcsFormat:
    name = "ecs"

    def activity(self, activity: Any, findings: list[Any]) -> str:
        outcome = _outcome(activity) or "unknown"
        auth = activity.type in AUTH_TYPES
        geo: dict[str, Any] = {}
        if activity.country:
            geo["country_iso_code"] = activity.country
        if activity.region:
            geo["region_name"] = activity.region
        if activity.city:
            geo["city_name"] = activity.city
        if activity.latitude is not None and activity.longitude is not None:
            geo["location"] = {"lat": activity.latitude, "lon": activity.longitude}
        source: dict[str, Any] = {}
        if activity.ip_address:
            source.update(ip=activity.ip_address, address=activity.ip_address)
        if geo:
            source["geo"] = geo
        if activity.asn or activity.isp:
            source["as"] = {"number": activity.asn, "organization": {"name": activity.isp or ""}}
        doc: dict[str, Any] = {
            "@timestamp": _iso(activity.timestamp),
            "ecs": {"version": ECS_VERSION},
            "event": {
                "id": str(activity.id),
                "kind": "alert" if activity.flagged else "event",
                "category": ["authentication"] if auth else ["web"],
                "type": ["info"],
                "action": activity.type,
                "outcome": outcome,
                "dataset": "tracking.activity",
                "module": "tracking",
                "risk_score": float(activity.risk_score or 0.0),
                "severity": ECS_SEVERITY.get(activity.severity or "", 0),
                "reason": "; ".join(f.reason for f in findings if not f.suppressed)[:1000] or None,
            },
            "source": source,
            "user": {"name": activity.username} if activity.username else {},
            "user_agent": {
                "original": activity.user_agent or "",
                "name": activity.browser or "",
                "os": {"name": activity.os or ""},
                "device": {"name": activity.device or ""},
            },
            "url": {"path": activity.endpoint or ""},
            "http": {
                "request": {"method": activity.method or ""},
                "response": {"status_code": activity.status},
            },
            "tags": sorted(activity.tags or []),
            "labels": {"severity": activity.severity or "", "flagged": bool(activity.flagged)},
            "rule": {"name": sorted({f.detector for f in findings if not f.suppressed})},
        }
        if activity.duration is not None:
            doc["event"]["duration"] = int(activity.duration * 1_000_000)  # ms → ns
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)

    def seal(self, seal: Any) -> str:
        doc = {
            "@timestamp": _iso(seal.created_at),
            "ecs": {"version": ECS_VERSION},
            "event": {
                "id": f"seal-{seal.last_seq}",
                "kind": "state",
                "action": "seal",
                "dataset": "tracking.seal",
                "module": "tracking",
            },
            "tracking": {"seal": _seal_record(seal)},
        }
        return json.dumps(doc, separators=(",", ":"))

    def block(self, kind: str, entry_id: int, payload: dict[str, Any], created: datetime) -> str:
        doc = {
            "@timestamp": _iso(created),
            "ecs": {"version": ECS_VERSION},
            "event": {
                "id": f"block-{entry_id}",
                "kind": "event",
                "category": ["iam"],
                "action": kind,
                "dataset": "tracking.block",
                "module": "tracking",
            },
            "tracking": {"block": payload},
        }
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def _seal_record(seal: Any) -> dict[str, Any]:
    return {
        "first_seq": seal.first_seq,
        "last_seq": seal.last_seq,
        "count": seal.count,
        "created_at": _iso(seal.created_at),
        "digest": seal.digest,
        "prev_hash": seal.prev_hash,
        "chain_hash": seal.chain_hash,
        "key_id": seal.key_id,
        "mac": seal.mac,
    }


class JsonFormat:
    name = "json"

    def activity(self, activity: Any, findings: list[Any]) -> str:
        record = activity_record(activity)
        for name in _LEFT_OUT:
            record.pop(name, None)
        return json.dumps(record, separators=(",", ":"), ensure_ascii=False, default=str)

    def seal(self, seal: Any) -> str:
        doc = {"record_type": "seal", "id": f"seal-{seal.last_seq}", **_seal_record(seal)}
        return json.dumps(doc, separators=(",", ":"))

    def block(self, kind: str, entry_id: int, payload: dict[str, Any], created: datetime) -> str:
        doc = {
            "record_type": kind,
            "id": f"block-{entry_id}",
            "timestamp": _iso(created),
            "block": payload,
        }
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False, default=str)
