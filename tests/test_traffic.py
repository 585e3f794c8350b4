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


# --- cases of tracking.simulator.sessions and .lookalikes ----------------------------------


def _test_period(users=200, days=10, seed=4):
    cut = START + timedelta(days=5)
    return list(traffic.simulate(users=users, days=days, start=START, seed=seed, attacks_from=cut))


def test_a_hijack_replays_a_live_session_from_another_network_and_browser():
    records = _test_period()
    hijacks: dict[str, list[dict]] = {}
    for r in records:
        if r["label"] == "session_hijack":
            hijacks.setdefault(r["label_detail"], []).append(r)
    assert len(hijacks) >= 5
    for detail, events in hijacks.items():
        assert detail.startswith("session_hijack-") and detail.split("-")[1].isdigit()
        first = events[0]
        owner = [
            r for r in records if r["session_id"] == first["session_id"] and r["label"] == "benign"
        ]
        # The owner's own login started that session minutes before; no login by the attacker.
        login = next(r for r in owner if r["endpoint"] == "/accounts/login/")
        gap = datetime.fromisoformat(first["timestamp"]) - datetime.fromisoformat(
            login["timestamp"]
        )
        assert timedelta(minutes=1) <= gap <= timedelta(minutes=61)
        logout = [r["timestamp"] for r in owner if r["endpoint"] == "/accounts/logout/"]
        assert all(e["timestamp"] < logout[0] for e in events[:1]) if logout else True
        assert all(e["endpoint"] != "/accounts/login/" for e in events)
        assert _net(first["ip_address"]) != _net(login["ip_address"])
        assert first["user_agent"] != login["user_agent"]
        assert {e["session_id"] for e in events} == {login["session_id"]}


def test_the_berlin_office_shares_one_nat_address_with_a_few_typos():
    records = _test_period()
    nat = [r for r in records if r["label_detail"].startswith("office_nat")]
    assert {r["ip_address"] for r in nat} == {"62.30.11.2"}
    assert len({r["username"] for r in nat}) >= 5
    typos = [r for r in nat if r["label_detail"] == "office_nat:typo"]
    logins = [r for r in nat if r["endpoint"] == "/accounts/login/" and r["status"] == 200]
    assert typos and all(r["status"] in (401, 403) for r in typos)
    assert len(typos) < 0.15 * len(logins)


def test_movers_change_city_and_provider_for_good_and_keep_their_devices():
    records = _test_period()
    cut = (START + timedelta(days=5)).isoformat()
    users = {u.username: u for u in traffic.population(200, 10, 4)}
    moved = [r for r in records if r["label_detail"] == "moved_house"]
    assert moved and all(r["timestamp"] >= cut for r in moved)
    movers = {r["username"] for r in moved}
    assert len(movers) >= 2
    new_lines = set()
    for name in movers:
        user = users[name]
        assert all(trip.back < 5 for trip in user.trips)  # nobody moves while travelling
        events = [r for r in moved if r["username"] == name]
        nets = {_net(r["ip_address"]) for r in events}
        assert len(nets) == 1
        net = nets.pop()
        new_lines.add(net)
        assert net.kind == "residential" and net.country == user.home_net.country
        assert net.city != user.home and net.asn != user.home_net.asn
        assert {r["user_agent"] for r in events} <= {user.desktop_ua, user.phone_ua} | set(
            traffic.NEW_PHONE_UAS
        )
        # For good: no home event from the old line after the first one from the new one.
        first = min(r["timestamp"] for r in events)
        assert not any(
            r["username"] == name
            and r["timestamp"] > first
            and r["label"] == "benign"
            and _net(r["ip_address"]) == user.home_net
            for r in records
        )
    assert len(new_lines) == len(movers)  # one mover per new line: not a team moving


def test_the_gateway_is_a_hosting_network_of_the_offices_country_with_usual_devices():
    records = _test_period()
    users = {u.username: u for u in traffic.population(200, 10, 4)}
    through = [r for r in records if r["label_detail"] == "gateway"]
    assert {_net(r["ip_address"]).city for r in through} == {"london", "chicago"}
    for r in through:
        net, user = _net(r["ip_address"]), users[r["username"]]
        assert net.kind == "gateway" and net.country == user.office_net.country
        assert r["user_agent"] == user.desktop_ua
    cut = (START + timedelta(days=5)).isoformat()
    assert all(r["timestamp"] >= cut for r in through)


def test_the_new_cases_are_deterministic_by_seed():
    keys = ("session_hijack", "moved_house", "office_nat", "gateway")

    def cases(seed):
        return [
            (r["id"], r["label"], r["label_detail"], r["ip_address"])
            for r in _test_period(users=60, days=8, seed=seed)
            if r["label"] in keys or r["label_detail"].split(":")[0].split("-")[0] in keys
        ]

    assert cases(9) == cases(9)
    assert cases(9) != cases(10)
