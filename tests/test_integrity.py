"""The canonical form of a row: stored MACs and seal leaves depend on its exact bytes."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime
from datetime import timezone as dt_timezone
from types import SimpleNamespace

from tracking.integrity import macs as integrity
from tracking.integrity.macs import CANONICAL_FIELDS, FORMAT_FIELDS

UTC = dt_timezone.utc


def reference(activity, fields=FORMAT_FIELDS[1]) -> bytes:
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

    doc = [norm(name, getattr(activity, name)) for name in fields]
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
        assert integrity.canonical_bytes(activity, 1) == reference(activity)


def test_known_row_has_known_bytes():
    expected = (
        b'["12345678-1234-5678-1234-567812345678","2026-01-02T03:04:05.000600+00:00",null,[]'
        + b",null" * (len(FORMAT_FIELDS[1]) - 4)
        + b"]"
    )
    assert integrity.canonical_bytes(CASES[0], 1) == expected


def test_mac_and_leaf_are_the_row_mac_and_the_leaf_hash():
    for activity in CASES:
        mac, leaf = integrity.mac_and_leaf(activity)
        assert mac == integrity.row_mac(activity)
        assert leaf == integrity.leaf_hash(activity)
        assert leaf == hashlib.sha256(reference(activity, CANONICAL_FIELDS)).hexdigest()
        activity.mac = mac
        assert integrity.row_ok(activity)


def test_version_2_is_version_1_plus_the_user_and_is_the_current_format():
    assert integrity.CURRENT_FORMAT == 2
    assert FORMAT_FIELDS[2] == (*FORMAT_FIELDS[1], "user_id", "outcome", "network_kind")
    assert CANONICAL_FIELDS == FORMAT_FIELDS[2]
    activity = row(user_id=42, outcome="failure", network_kind="vpn")
    expected = reference(activity, FORMAT_FIELDS[2])
    assert expected.endswith(b',42,"failure","vpn"]')
    assert integrity.canonical_bytes(activity, 2) == expected[: -len(b'42,"failure","vpn"]')] + (
        b'"42","failure","vpn"]'
    )


def test_a_version_2_mac_binds_the_user_and_survives_the_account_being_deleted():
    activity = row(user_id=7, username="alice")
    activity.mac = integrity.row_mac(activity)
    assert activity.mac.startswith("2:") and len(activity.mac) <= 80
    assert integrity.row_format(activity.mac) == 2
    leaf = integrity.leaf_hash(activity)
    assert integrity.row_state(activity) == (leaf, True)
    for other in (8, "7 ", 70):
        activity.user_id = other
        assert integrity.row_state(activity) == (leaf, False), other
    activity.user_id = None  # on_delete=SET_NULL: the row still verifies, same leaf
    assert integrity.row_state(activity) == (leaf, True)


def test_version_1_macs_still_verify_under_version_1():
    activity = row(user_id=3)
    activity.mac = integrity.sign(integrity.canonical_bytes(activity, 1), "row")
    assert integrity.row_format(activity.mac) == 1
    assert integrity.row_ok(activity)
    assert integrity.leaf_hash(activity) == hashlib.sha256(reference(activity)).hexdigest()
    activity.username = "mallory"
    assert not integrity.row_ok(activity)


def test_unknown_or_mangled_format_never_verifies():
    activity = row(user_id=7)
    mac = integrity.row_mac(activity)
    for forged in ("9:" + mac[2:], mac[:-1], mac.replace("2:", "1:", 1), mac.rsplit(":", 1)[0]):
        activity.mac = forged
        assert not integrity.row_ok(activity), forged


def test_outcome_is_covered_by_the_current_format():
    """Setting, changing or clearing the outcome of a version 2 row fails its MAC."""
    failed = row(status=200, outcome="failure")
    failed.mac = integrity.row_mac(failed)
    assert integrity.row_ok(failed)
    for other in ("success", ""):
        failed.outcome = other
        assert not integrity.row_ok(failed), other
