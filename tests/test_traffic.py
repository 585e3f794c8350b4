"""The labelled traffic simulator: deterministic, sorted, labelled, realistic volumes."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

from tracking.simulator import traffic
from tracking.simulator.world import CITIES, NETWORKS

UTC = dt_timezone.utc

START = datetime(2026, 3, 2, tzinfo=UTC)
IMPORT_KEYS = {
    "id",
    "timestamp",
    "type",
    "username",
    "ip_address",
    "user_agent",
    "endpoint",
    "method",
    "status",
    "duration",
    "session_id",
    "headers",
    "params",
}


def _net(ip):
    prefix = ip.rsplit(".", 1)[0] + "."
    return next(n for n in NETWORKS if n.cidr.startswith(prefix))


def test_deterministic_in_seed():
    a = list(traffic.simulate(users=10, days=3, start=START, seed=7))
    b = list(traffic.simulate(users=10, days=3, start=START, seed=7))
    c = list(traffic.simulate(users=10, days=3, start=START, seed=8))
    assert a == b
    assert a != c


def test_sorted_within_window_and_import_shaped():
    records = list(traffic.simulate(users=20, days=3, start=START, seed=1))
    stamps = [datetime.fromisoformat(r["timestamp"]) for r in records]
    assert stamps == sorted(stamps)
    assert stamps[0] >= START and stamps[-1] < START + timedelta(days=3)
    assert all(s.utcoffset() == timedelta(0) for s in stamps)
    assert len({r["id"] for r in records}) == len(records)
    for r in records:
        assert IMPORT_KEYS <= set(r)
        assert r["label"] in ("benign", *traffic.ATTACK_LABELS)
        assert isinstance(r["label_detail"], str)
        json.dumps(r)  # JSON-safe


def test_volumes_and_every_attack_kind_present():
    records = list(traffic.simulate(users=50, days=4, start=START, seed=0))
    labels = Counter(r["label"] for r in records)
    # ~50 users x 4 days of life: thousands of events, a small share of attacks.
    assert 1500 < labels["benign"] < 8000
    for kind in traffic.ATTACK_LABELS:
        assert labels[kind] > 0, kind
    assert sum(labels[k] for k in traffic.ATTACK_LABELS) < 0.15 * len(records)
    assert Counter(r["type"] for r in records).keys() >= {
        "AUTH",
        "PAYMENT",
        "API",
        "DATA",
        "ACCOUNT",
        "ADMIN",
    }


def test_attack_sessions_carry_an_id():
    records = list(traffic.simulate(users=50, days=6, start=START, seed=2))
    sessions = {r["label_detail"] for r in records if r["label"] != "benign"}
    assert all(
        s.split("-")[0] in traffic.ATTACK_LABELS and s.split("-")[1].isdigit() for s in sessions
    )
    assert sum(1 for s in sessions if s.startswith("takeover-")) >= 2


def test_takeover_follows_the_owner_login_from_far_away():
    records = list(traffic.simulate(users=50, days=5, start=START, seed=3))
    takeovers = {}
    for r in records:
        if r["label"] == "takeover":
            takeovers.setdefault(r["label_detail"], []).append(r)
    assert takeovers
    users = {u.username: u for u in traffic.population(50, 5, 3)}
    for events in takeovers.values():
        first = events[0]
        victim = users[first["username"]]
        net = _net(first["ip_address"])
        assert net.kind in ("hosting", "vpn") and net.country != victim.country
        assert first["user_agent"] not in (victim.desktop_ua, victim.phone_ua)
        t0 = datetime.fromisoformat(first["timestamp"])
        own_logins = [
            datetime.fromisoformat(r["timestamp"])
            for r in records
            if r["username"] == victim.username
            and r["label"] == "benign"
            and r["endpoint"] == "/accounts/login/"
            and r["status"] == 200
            and timedelta(0) < t0 - datetime.fromisoformat(r["timestamp"]) <= timedelta(minutes=30)
        ]
        assert own_logins, "takeover should come minutes after the owner's own login"
        assert {"ACCOUNT"} <= {e["type"] for e in events}


def test_stuffing_is_one_ip_many_usernames_mostly_failing():
    records = list(traffic.simulate(users=50, days=4, start=START, seed=0))
    burst = [r for r in records if r["label"] == "stuffing"]
    by_session = Counter(r["label_detail"] for r in burst)
    session = by_session.most_common(1)[0][0]
    events = [r for r in burst if r["label_detail"] == session]
    assert len({r["ip_address"] for r in events}) == 1
    assert len({r["username"] for r in events}) >= 30
    known = {u.username for u in traffic.population(50, 4, 0)}
    assert any(r["username"] not in known for r in events)
    assert sum(r["status"] == 401 for r in events) / len(events) > 0.9
    span = datetime.fromisoformat(events[-1]["timestamp"]) - datetime.fromisoformat(
        events[0]["timestamp"]
    )
    assert span < timedelta(minutes=15)


def test_bulk_export_is_at_night_from_owners_device():
    records = list(traffic.simulate(users=50, days=4, start=START, seed=0))
    events = [r for r in records if r["label"] == "bulk_export"]
    assert len([e for e in events if e["type"] == "DATA"]) >= 40
    users = {u.username: u for u in traffic.population(50, 4, 0)}
    owner = users[events[0]["username"]]
    assert {e["user_agent"] for e in events} == {owner.desktop_ua}
    for e in events:
        local = datetime.fromisoformat(e["timestamp"]).astimezone(owner.tz)
        assert local.hour < 6


def test_benign_hard_cases_present():
    records = list(traffic.simulate(users=200, days=10, start=START, seed=4))
    details = Counter(r["label_detail"].split(":")[0] for r in records if r["label"] == "benign")
    for case in (
        "flight",
        "nearby",
        "mobile_carrier",
        "mobile_jump",
        "country_only",
        "new_device",
        "night_owl",
        "hotel",
        "typo",
    ):
        assert details[case] > 0, case


def test_flights_take_plausible_time():
    records = list(traffic.simulate(users=200, days=10, start=START, seed=4))
    by_user: dict[str, list[dict]] = {}
    for r in records:
        if r["label"] == "benign":
            by_user.setdefault(r["username"], []).append(r)
    checked = 0
    for r in records:
        if r["label_detail"].startswith("flight:") and r["endpoint"] == "/accounts/login/":
            origin, dest = r["label_detail"].split(":")[1].split("->")
            t = datetime.fromisoformat(r["timestamp"])
            before = [
                datetime.fromisoformat(x["timestamp"])
                for x in by_user[r["username"]]
                if datetime.fromisoformat(x["timestamp"]) < t
                and x["label_detail"] not in ("inflight", "typo")
                and not x["label_detail"].startswith("flight:")
            ]
            if before:
                gap = (t - max(before)).total_seconds() / 3600
                assert gap >= traffic.distance_km(origin, dest) / 900, (origin, dest, gap)
                checked += 1
    assert checked > 0
    assert traffic.flight_hours("london", "new_york") > 6


def test_attacks_from_keeps_training_clean():
    cut = START + timedelta(days=3)
    records = list(traffic.simulate(users=40, days=5, start=START, seed=5, attacks_from=cut))
    attacks = [r for r in records if r["label"] != "benign"]
    assert attacks
    assert all(datetime.fromisoformat(r["timestamp"]) >= cut for r in attacks)
    quiet = list(traffic.simulate(users=10, days=2, start=START, attacks=False))
    assert {r["label"] for r in quiet} == {"benign"}


def test_scale_changes_volume():
    small = sum(1 for _ in traffic.simulate(users=20, days=2, start=START, scale=0.5))
    big = sum(1 for _ in traffic.simulate(users=20, days=2, start=START, scale=2.0))
    assert big > 1.5 * small


def test_write_ndjson(tmp_path):
    path = tmp_path / "t.ndjson"
    n = traffic.write_ndjson(traffic.simulate(users=5, days=1, start=START), path)
    lines = path.read_text().splitlines()
    assert n == len(lines) > 0
    assert "label" in json.loads(lines[0])
    traffic.write_ndjson(traffic.simulate(users=5, days=1, start=START), path, include_labels=False)
    first = json.loads(path.read_text().splitlines()[0])
    assert "label" not in first and "label_detail" not in first


def test_world_cities_used_exist():
    for dest in traffic.FLIGHT_DESTINATIONS:
        assert dest in CITIES


def test_ids_differ_between_windows():
    a = {r["id"] for r in traffic.simulate(users=5, days=1, start=START)}
    b = {r["id"] for r in traffic.simulate(users=5, days=1, start=START + timedelta(days=1))}
    assert a and b and not (a & b)
