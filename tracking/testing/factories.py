"""Create ``Activity`` rows for tests with realistic values, fast.

Rows go straight to the table through ``Activity.objects.bulk_create`` (no enrichment,
detection, rollups or sealing): tests that need those run the real writer instead. Values
come from the synthetic world (``tracking.simulator.world``) so geo and network agree with the
test GeoIP databases. Every row gets a valid row MAC, like a row the writer stored.

    make_activity(type="AUTH", username="alice", flagged=True)
    make_activities(50, ip_address="10.0.0.1")
"""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any

from tracking.integrity.macs import row_mac
from tracking.models import Activity
from tracking.outcome import from_status
from tracking.simulator.world import CITIES, NETWORKS, host

UTC = dt_timezone.utc

_ENDPOINTS = (
    ("AUTH", "POST", "/api/auth/login/"),
    ("AUTH", "POST", "/api/auth/logout/"),
    ("PAYMENT", "POST", "/api/payments/"),
    ("ACCOUNT", "PATCH", "/api/account/email/"),
    ("DATA", "GET", "/api/reports/"),
    ("API", "GET", "/api/items/"),
    ("ADMIN", "GET", "/admin/"),
)
_AGENTS = (
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Safari/537.36",
        "Other",
        "Windows",
        "Chrome",
        False,
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
        "iPhone",
        "iOS",
        "Mobile Safari",
        True,
    ),
    (
        "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
        "Other",
        "Linux",
        "Firefox",
        False,
    ),
)

# Deterministic by default so a failing test reproduces.
_rng = random.Random(1234)


def _defaults(index: int, now: datetime) -> dict[str, Any]:
    network = NETWORKS[_rng.randrange(len(NETWORKS))]
    city = CITIES.get(network.city) if network.city else None
    type_, method, endpoint = _ENDPOINTS[_rng.randrange(len(_ENDPOINTS))]
    ua, device, os_, browser, mobile = _AGENTS[_rng.randrange(len(_AGENTS))]
    ip = host(network, _rng.randrange(254))
    return {
        "timestamp": now - timedelta(minutes=index, seconds=_rng.randrange(60)),
        "type": type_,
        "username": "",
        "session_id": uuid.uuid4().hex + uuid.uuid4().hex,
        "ip_address": ip,
        "remote_addr": ip,
        "isp": network.org,
        "asn": network.asn,
        "country": network.country,
        "region": city.region if city else "",
        "city": city.name if city else "",
        "latitude": city.latitude if city else None,
        "longitude": city.longitude if city else None,
        "accuracy_radius": network.accuracy_radius,
        "device": device,
        "os": os_,
        "browser": browser,
        "is_mobile": mobile,
        "user_agent": ua,
        "endpoint": endpoint,
        "method": method,
        "status": 200,
        "headers": {"User-Agent": ua, "Accept": "application/json"},
        "params": {},
        "duration": round(_rng.uniform(20.0, 400.0), 1),
    }


def build_activity(index: int = 0, **fields: Any) -> Activity:
    """An unsaved Activity with realistic defaults; ``fields`` override them.

    ``user`` sets ``username`` from the user unless given. ``timestamp`` defaults to
    ``index`` minutes before now (so a batch is spread over time, newest first).
    """
    now = fields.pop("now", None) or datetime.now(UTC)
    values = _defaults(index, now)
    user = fields.get("user")
    if user is not None and "username" not in fields:
        values["username"] = user.get_username()
    values.update(fields)
    values.setdefault("outcome", from_status(values.get("status")))
    activity = Activity(**values)
    if not activity.mac:
        activity.mac = row_mac(activity)
    return activity


def make_activities(n: int, **fields: Any) -> list[Activity]:
    """Store ``n`` activities in one ``bulk_create``; ``fields`` apply to every row."""
    rows = [build_activity(i, **dict(fields)) for i in range(n)]
    return Activity.objects.bulk_create(rows)


def make_activity(**fields: Any) -> Activity:
    """Store one activity; returns it re-read from the database (decrypted lazily)."""
    (row,) = make_activities(1, **fields)
    return Activity.objects.get(pk=row.pk)
