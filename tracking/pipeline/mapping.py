"""Import records into events: ``event_from_record(record) -> Event``.

One mapping for every record that does not come from a request: ``tracking import`` lines
(our export, minimal records, other tools' logs) and the demo's simulated traffic. It
validates the record (``BadRecord`` with the reason), hashes a raw session id (unless it is
one already: 64 hex digits, as our export writes it), never trusts the exported ``user`` key
(another database's), derives a deterministic id (UUIDv5 of the content) when the record
has none, and carries enrichment and verdict fields the record already has (the batch
step keeps them). The findings of an exported record travel in ``verdict["findings"]``:
``ingest`` stores them with the row (``rows.imported_findings``).
"""

from __future__ import annotations

import ipaddress
import json
import re
import uuid
from datetime import datetime
from datetime import timezone as dt_timezone
from typing import Any

from detectors.anonymous_network import NETWORK_KINDS
from tracking.activity_types import all_types
from tracking.events import (
    ENRICHMENT_FIELDS,
    VERDICT_FIELDS,
    BadRecord,
    Event,
    parse_timestamp,
)
from tracking.integrity import macs as integrity
from tracking.outcome import clean as clean_outcome

UTC = dt_timezone.utc

ID_NAMESPACE = uuid.UUID("7d7f9d2e-3c55-4c1b-9f40-4b7e8d7b1a10")
SESSION_HASH = re.compile(r"[0-9a-f]{64}")
UNIX_TIME = re.compile(r"\d{9,11}(\.\d+)?")
TEXT_KEYS = ("username", "user_agent", "endpoint", "method", "forwarded_for")


def _parse_timestamp(value: Any) -> datetime:
    """ISO-8601 text or Unix time (seconds, as many log shippers write it), in UTC."""
    if isinstance(value, str) and UNIX_TIME.fullmatch(value.strip()):
        value = float(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        # Unix time (seconds), as many log shippers write it.
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            raise BadRecord(f"timestamp {value!r} is out of range") from None
    if not isinstance(value, str) or not value:
        raise BadRecord(
            "missing timestamp" if value in (None, "") else f"timestamp {value!r} is not text"
        )
    try:
        return parse_timestamp(value)
    except ValueError:
        raise BadRecord(f"timestamp {value!r} is not ISO-8601") from None


def _optional_number(record: dict, key: str, *, integer: bool = False) -> Any:
    value = record.get(key)
    if value in (None, ""):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise BadRecord(f"{key} {value!r} is not a number")
    try:
        number = float(value)
    except ValueError:
        raise BadRecord(f"{key} {value!r} is not a number") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise BadRecord(f"{key} {value!r} is not finite")
    if integer:
        if number != int(number):
            raise BadRecord(f"{key} {value!r} is not a whole number")
        return int(number)
    return number


def _mapping(record: dict, key: str) -> dict:
    value = record.get(key)
    if value in (None, ""):
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise BadRecord(f"{key} is not a JSON object") from None
    if not isinstance(value, dict):
        raise BadRecord(f"{key} must be an object, not {type(value).__name__}")
    return value


def _ip(record: dict, key: str) -> str | None:
    value = record.get(key)
    if value in (None, ""):
        return None
    try:
        return str(ipaddress.ip_address(str(value).strip()))
    except ValueError:
        raise BadRecord(f"{key} {value!r} is not an IP address") from None


def _type_code(kind: str) -> str:
    """A known type in any letter case becomes its code ("auth" -> "AUTH")."""

    known = all_types()
    if kind in known:
        return kind
    upper = kind.upper()
    return upper if upper in known else kind


def _content_id(record: dict) -> str:
    doc = json.dumps(record, sort_keys=True, default=str, separators=(",", ":"))
    return str(uuid.uuid5(ID_NAMESPACE, doc))


def event_from_record(record: Any) -> Event:
    """An ``Event`` for one import record; raises ``BadRecord`` with the reason."""

    if not isinstance(record, dict):
        raise BadRecord(f"a record must be an object, not {type(record).__name__}")
    kind = record.get("type")
    if not isinstance(kind, str) or not kind.strip():
        raise BadRecord("missing type")
    if len(kind) > 32:
        raise BadRecord(f"type {kind[:40]!r}... is longer than 32 characters")
    kind = _type_code(kind.strip())
    timestamp = _parse_timestamp(record.get("timestamp"))
    if record.get("id") in (None, ""):
        ident = _content_id({k: v for k, v in record.items() if k not in ("label", "label_detail")})
    else:
        try:
            ident = str(uuid.UUID(str(record["id"])))
        except ValueError:
            raise BadRecord(f"id {record['id']!r} is not a UUID") from None
    status = _optional_number(record, "status", integer=True)
    if status is not None and not 0 <= status <= 999:
        raise BadRecord(f"status {status} is not an HTTP status")
    duration = _optional_number(record, "duration")
    if duration is not None and duration < 0:
        raise BadRecord(f"duration {duration} is negative")
    texts = {}
    for key in TEXT_KEYS:
        value = record.get(key)
        if value is not None and not isinstance(value, str | int | float):
            raise BadRecord(f"{key} must be text")
        texts[key] = "" if value is None else str(value)
    session = record.get("session_id")
    session = "" if session in (None, "") else str(session)
    if session and not SESSION_HASH.fullmatch(session):
        session = integrity.hash_session_key(session)
    enrichment = {k: record[k] for k in ENRICHMENT_FIELDS if k in record}
    for key in ("latitude", "longitude"):
        if key in enrichment:
            enrichment[key] = _optional_number(record, key)
    for key in ("asn", "accuracy_radius"):
        if key in enrichment:
            enrichment[key] = _optional_number(record, key, integer=True)
    network_kind = enrichment.get("network_kind")
    if network_kind not in (None, "") and network_kind not in NETWORK_KINDS:
        raise BadRecord(f"network_kind must be one of {', '.join(NETWORK_KINDS)} or empty")
    verdict = {k: record[k] for k in VERDICT_FIELDS if k in record and record[k] is not None}
    findings = recorded_findings(record)
    if findings is not None:
        verdict["findings"] = findings
    if "tags" in verdict:
        tags = verdict["tags"]
        if isinstance(tags, str):
            tags = [t for t in re.split(r"[;,]", tags) if t]
        if not isinstance(tags, list):
            raise BadRecord("tags must be a list")
        verdict["tags"] = [str(t) for t in tags]
    if "risk_score" in verdict:
        verdict["risk_score"] = _optional_number(record, "risk_score")
    try:
        # Files without it: the status decides in ingest (>= 400 is a failure).
        outcome = clean_outcome(record.get("outcome"))
    except ValueError as exc:
        raise BadRecord(str(exc)) from None
    return Event(
        type=kind,
        timestamp=timestamp,
        id=ident,
        username=texts["username"],
        session_id=session,
        ip_address=_ip(record, "ip_address"),
        remote_addr=_ip(record, "remote_addr"),
        forwarded_for=texts["forwarded_for"],
        user_agent=texts["user_agent"],
        endpoint=texts["endpoint"],
        method=texts["method"],
        status=status,
        outcome=outcome,
        duration=duration,
        headers=_mapping(record, "headers"),
        params=_mapping(record, "params"),
        enrichment=enrichment,
        verdict=verdict,
    )


def recorded_findings(record: dict) -> list[dict] | None:
    """The recorded findings of an exported record; None when the record has no verdict."""
    items = record.get("findings")
    if not isinstance(items, list):
        return None
    return [f for f in items if isinstance(f, dict) and f.get("detector") and f.get("tag")]
