"""The plain event: what a view's ``@track``, an import line or the demo hands to the writer.

It is JSON-safe (``to_dict``/``from_dict``) so the same object crosses the in-process queue,
the durable spool and Celery unchanged. It never carries a secret: the session key is already
a keyed hash and headers/params are already redacted when an Event is built from a request.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from datetime import timezone as dt_timezone
from typing import Any

from tracking.compat import parse_iso_datetime
from tracking.entropy import random_bytes

UTC = dt_timezone.utc

# Fields enrichment fills in (an imported record may already carry them; those are kept).
ENRICHMENT_FIELDS = (
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
)

# Verdict/review fields an imported record may carry; they are merged, never lost.
VERDICT_FIELDS = ("flagged", "tags", "risk_score", "severity", "review_status")


class BadRecord(ValueError):
    """A record (an import line) that cannot become an event; the message is the reason
    shown to the operator."""


def parse_timestamp(value: str | datetime) -> datetime:
    """ISO-8601 text (``Z`` allowed) or a datetime as an aware datetime in UTC (naive means
    UTC). Raises ``ValueError`` for anything else. The one parser of event timestamps:
    ``Event.from_dict``, the batch step and imports use it."""
    if isinstance(value, str):
        # Python 3.10's fromisoformat refuses forms 3.11 reads (short fractions, +0000).
        value = parse_iso_datetime(value.replace("Z", "+00:00"))
    if not isinstance(value, datetime):
        raise ValueError(f"not a timestamp: {value!r}")
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _now() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    """A random (version 4) UUID as text, as ``str(uuid.uuid4())`` makes it."""
    b = bytearray(random_bytes(16))
    b[6] = (b[6] & 0x0F) | 0x40  # version 4
    b[8] = (b[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass(slots=True)
class Event:
    type: str
    timestamp: datetime = field(default_factory=_now)
    id: str = field(default_factory=new_id)
    user_id: int | str | None = None
    username: str = ""
    session_id: str = ""  # keyed hash, never the raw session key
    ip_address: str | None = None
    remote_addr: str | None = None
    forwarded_for: str = ""
    user_agent: str = ""
    endpoint: str = ""
    method: str = ""
    status: int | None = None
    # "success", "failure", or "" where it means nothing (see tracking.outcome).
    outcome: str = ""
    duration: float | None = None
    headers: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    # Pre-filled enrichment (imports) and verdicts (imports of our own export).
    enrichment: dict[str, Any] = field(default_factory=dict)
    verdict: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The event as JSON-ready data. The mappings (headers, params, enrichment,
        verdict) are copied one level deep: ``dataclasses.asdict``'s recursive copy was the
        largest cost of publishing a batch to Celery, and every caller serializes the result
        right away."""
        data = {name: getattr(self, name) for name in _NAMES}
        for name in _MAPPINGS:
            value = data[name]
            if isinstance(value, dict):  # anything else (None from a bad record) as it is
                data[name] = dict(value)
        data["timestamp"] = self.timestamp.isoformat()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Event:
        names = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        ts = kwargs.get("timestamp")
        if isinstance(ts, str | datetime):
            kwargs["timestamp"] = parse_timestamp(ts)
        return cls(**kwargs)


_NAMES = tuple(f.name for f in fields(Event))
_MAPPINGS = ("headers", "params", "enrichment", "verdict")
