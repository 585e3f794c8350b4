"""The canonical form of a row: stored MACs and seal leaves depend on its exact bytes."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime
from datetime import timezone as dt_timezone
from types import SimpleNamespace

from tracking.integrity import macs as integrity
from tracking.integrity.macs import CANONICAL_FIELDS

UTC = dt_timezone.utc


def reference(activity) -> bytes:
    """The form as first defined (per-field normalisation, then ``json.dumps``)."""

    def norm(name, value):
        if name == "timestamp":
            return value.isoformat(timespec="microseconds")
        if name == "id":
            return str(value)
        if name == "tags":
            return sorted(value or [])
        if isinstance(value, float):
            return repr(round(value, 6))
        return value

    doc = [norm(name, getattr(activity, name)) for name in CANONICAL_FIELDS]
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()


def row(**values):
    base = {name: None for name in CANONICAL_FIELDS}
    base.update(
        id=uuid.UUID("12345678-1234-5678-1234-567812345678"),
        timestamp=datetime(2026, 1, 2, 3, 4, 5, 600, tzinfo=UTC),
        tags=[],
    )
    base.update(values)
    return SimpleNamespace(**base)


CASES = [
    row(),
    row(
        tags=["zeta", "alpha"],
        username="élise",
        latitude=51.5074123456,
        longitude=-0.1,
        duration=12.0,
        risk_score=0.123456789,
        asn=64600,
        is_mobile=True,
        headers={"b": 1, "a": "x\u2028y", "n": [1.5, None]},
        params={"q": {"z": 1, "y": 2}},
        city="São Paulo",
        status=401,
    ),
    row(tags=None, latitude=0.0, duration=1e-7, headers={}, params={"value": 3}),
]


def test_canonical_bytes_are_the_form_stored_macs_were_made_with():
    for activity in CASES:
        assert integrity.canonical_bytes(activity) == reference(activity)


def test_known_row_has_known_bytes():
    expected = (
        b'["12345678-1234-5678-1234-567812345678","2026-01-02T03:04:05.000600+00:00",null,[]'
        + b",null" * (len(CANONICAL_FIELDS) - 4)
        + b"]"
    )
    assert integrity.canonical_bytes(CASES[0]) == expected


def test_mac_and_leaf_are_the_row_mac_and_the_leaf_hash():
    for activity in CASES:
        mac, leaf = integrity.mac_and_leaf(activity)
        assert mac == integrity.row_mac(activity)
        assert leaf == integrity.leaf_hash(activity)
        assert leaf == hashlib.sha256(reference(activity)).hexdigest()
        activity.mac = mac
        assert integrity.row_ok(activity)
