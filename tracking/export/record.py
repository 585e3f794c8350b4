"""The export record: every Activity field, JSON-safe, in ``EXPORT_FIELDS`` order.

One definition shared by the API export, the ``tracking export`` CLI, the admin and import:
``activity_record(activity)`` for one instance, the field names and their types for the
encodings (``tracking.export.csvformat``) and the fast reader (``tracking.export.values``).
"""

from __future__ import annotations

import logging
import math
from datetime import datetime
from datetime import timezone as dt_timezone
from typing import Any

from tracking import redaction
from tracking.integrity.crypto import DecryptionError
from tracking.models import Activity

UTC = dt_timezone.utc

logger = logging.getLogger("tracking.export.records")

FORMATS = ("csv", "json", "ndjson")
CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
    "ndjson": "application/x-ndjson",
}

EXPORT_FIELDS: tuple[str, ...] = (
    "id",
    "timestamp",
    "type",
    "type_display",
    "flagged",
    "tags",
    "user",
    "username",
    "session_id",
    "ip_address",
    "remote_addr",
    "forwarded_for",
    "isp",
    "asn",
    "country",
    "region",
    "city",
    "latitude",
    "longitude",
    "accuracy_radius",
    "network_kind",
    "device",
    "os",
    "browser",
    "is_mobile",
    "is_bot",
    "user_agent",
    "endpoint",
    "method",
    "status",
    "outcome",
    "headers",
    "params",
    "duration",
    "risk_score",
    "severity",
    "review_status",
    "findings",
)

FINDING_FIELDS = ("detector", "tag", "score", "severity", "reason")

# Fields of the record that are no model column.
COMPUTED_FIELDS = ("type_display", "findings")

# Typed fields of the record (CSV text is decoded back to these types).
BOOL_FIELDS = frozenset({"flagged", "is_mobile", "is_bot"})
INT_FIELDS = frozenset({"asn", "accuracy_radius", "status"})
FLOAT_FIELDS = frozenset({"latitude", "longitude", "duration", "risk_score"})
JSON_FIELDS = frozenset({"headers", "params", "findings"})


def _iso(ts: datetime) -> str:
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).isoformat()


def decrypted_field(activity: Any, name: str) -> Any:
    try:
        value = getattr(activity, name)
    except DecryptionError:
        # Unreadable with the configured keys: export the row without this field rather
        # than aborting a stream of millions of rows.
        logger.warning("could not decrypt %s of activity %s", name, activity.pk)
        return None
    return defensive_redact(name, value)


def defensive_redact(name: str, value: Any) -> Any:
    """Redact ``headers``/``params`` again on output (values are redacted at write time;
    this is defence in depth against rows written by an older or misconfigured version)."""
    if not isinstance(value, dict):
        return value
    func = redaction.redact_headers if name == "headers" else redaction.redact_mapping
    try:
        return func(value)
    except Exception:  # a redaction bug must not expose or lose the record
        logger.exception("output redaction failed for %s", name)
        return value


def finding_record(finding: Any) -> dict[str, Any]:
    return {name: getattr(finding, name) for name in FINDING_FIELDS}


def activity_record(activity: Any) -> dict[str, Any]:
    """Every field of ``activity`` as a JSON-safe dict in ``EXPORT_FIELDS`` order.

    Findings come from ``activity.findings.all()`` (prefetch them for many rows); suppressed
    findings are audit-only and not part of the verdict, so they are left out.
    """
    findings = [
        finding_record(f)
        for f in sorted(activity.findings.all(), key=lambda f: (-f.score, f.detector, f.tag))
        if not f.suppressed
    ]
    record: dict[str, Any] = {}
    for name in EXPORT_FIELDS:
        if name == "timestamp":
            value: Any = _iso(activity.timestamp)
        elif name == "id":
            value = str(activity.id)
        elif name == "user":
            value = activity.user_id
            if value is not None and not isinstance(value, int | str):
                value = str(value)  # e.g. a UUID primary key of a custom user model
        elif name == "tags":
            value = sorted(activity.tags or [])
        elif name in ("headers", "params"):
            value = decrypted_field(activity, name)
        elif name == "findings":
            value = findings
        else:
            value = getattr(activity, name)
            if isinstance(value, float) and not math.isfinite(value):
                value = None  # NaN/Infinity are not JSON; such a value carries no measurement
        record[name] = value
    return record


def field_kinds() -> dict[str, str]:
    """Internal type of each exported model column (decides the CSV cell encoding)."""

    return {
        n: Activity._meta.get_field(n).get_internal_type()
        for n in EXPORT_FIELDS
        if n not in ("user", "id", "timestamp", "tags", "headers", "params", *COMPUTED_FIELDS)
    }
