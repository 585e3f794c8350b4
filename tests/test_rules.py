"""Sigma-subset rules: loading errors name file and key; modifiers; conditions; thresholds; and
every shipped rule fires on its pattern and not on a benign near-miss (no database)."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from detectors.rules import RuleEngine, RuleError, load_rule_file, load_rules, parse_rule
from tests.detection_helpers import obs

PACK = Path(__file__).resolve().parent.parent / "rules"


def write(tmp_path: Path, text: str, name: str = "r.yml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


GOOD = """
title: t
id: t-1
detection:
  sel:
    type: AUTH
  condition: sel
"""


@pytest.mark.parametrize(
    "text, key, message",
    [
        (
            "title: t\nid: x\ndetection: {sel: {type: AUTH}, condition: sel}\nsevrity: high\n",
            "sevrity",
            "unknown key",
        ),
        ("title: t\nid: x\n", "detection", "missing"),
        (
            "title: t\nid: x\ndetection: {sel: {type|regex: 'A.*'}, condition: sel}\n",
            "detection.sel.type|regex",
            "unknown modifier",
        ),
        (
            "title: t\nid: x\ndetection: {sel: {colour: red}, condition: sel}\n",
            "detection.sel.colour",
            "unknown field",
        ),
        (
            "title: t\nid: x\ndetection: {sel: {type: AUTH}, condition: sel and other}\n",
            "detection.condition",
            "unknown selection",
        ),
        ("title: t\nid: x\ndetection: {sel: {type: AUTH}}\n", "detection.condition", "missing"),
        (
            "title: t\nid: x\ndetection: {sel: {status|gt: many}, condition: sel}\n",
            "detection.sel.status|gt",
            "needs a number",
        ),
        (
            "title: t\nid: x\ndetection: {sel: {ip_address|cidr: 10.0.0.0/99}, condition: sel}\n",
            "detection.sel.ip_address|cidr",
            "not a network",
        ),
        (
            "title: t\nid: x\ndetection: {sel: {type|in: AUTH}, condition: sel}\n",
            "detection.sel.type|in",
            "needs a list",
        ),
        (
            "title: t\nid: x\nlevel: severe\ndetection: {sel: {type: AUTH}, condition: sel}\n",
            "level",
            "unknown level",
        ),
        (
            "title: t\nid: x\ndetection: {sel: {type: AUTH}, condition: sel}\nthreshold: {count: 3, timespan: 10 minutes}\n",
            "threshold.timespan",
            "timespan",
        ),
        (
            "title: t\nid: x\ndetection: {sel: {type: AUTH}, condition: sel}\nthreshold: {count: 0, timespan: 10m}\n",
            "threshold.count",
            "positive",
        ),
        (
            "title: t\nid: x\ndetection: {sel: {type: AUTH}, condition: sel}\nthreshold: {count: 3, timespan: 10m, window: 5}\n",
            "threshold.window",
            "unknown key",
        ),
        (
            "title: t\nid: x\ndetection: {sel: {type: AUTH}, condition: sel}\nthreshold: {count: 3, timespan: 10m, group_by: [ctx.new_asn]}\n",
            "threshold.group_by",
            "not a stored field",
        ),
        (
            "title: t\nid: x\ndetection: {sel: {ctx.new_asn: true}, condition: sel}\nthreshold: {count: 3, timespan: 10m}\n",
            "threshold",
            "stored fields",
        ),
        (
            "title: t\nid: x\ndetection: {sel: {type: AUTH}, condition: sel}\naction: {flag: yes please}\n",
            "action.flag",
            "true or false",
        ),
        (
            "title: t\nid: x\ndetection: {sel: {type: AUTH}, condition: sel}\naction: {blok: true}\n",
            "action.blok",
            "unknown key",
        ),
        (
            "title: t\nid: x\ndetection: {sel: {type: AUTH}, condition: sel}\naction: {severity: urgent}\n",
            "action.severity",
            "unknown severity",
        ),
        (
            "title: t\nid: x\ndetection: {sel: {type: AUTH}, condition: sel}\naction: {score: 3}\n",
            "action.score",
            "[0, 1]",
        ),
        (
            "title: t\nid: 'bad id!'\ndetection: {sel: {type: AUTH}, condition: sel}\n",
            "id",
            "use letters",
        ),
    ],
)
def test_invalid_rules_name_file_and_key(tmp_path, text, key, message):
    path = write(tmp_path, text)
    with pytest.raises(RuleError) as info:
        load_rule_file(path)
    err = info.value
    assert err.path == str(path) and err.key == key
    assert message in str(err) and str(path) in str(err) and key in str(err)


def test_invalid_yaml_and_non_mapping(tmp_path):
    with pytest.raises(RuleError, match="invalid YAML"):
        load_rule_file(write(tmp_path, "title: [unclosed\n"))
    with pytest.raises(RuleError, match="one mapping"):
        load_rule_file(write(tmp_path, "- a\n- b\n"))


def test_duplicate_ids_and_missing_folder(tmp_path):
    write(tmp_path, GOOD, "a.yml")
    write(tmp_path, GOOD, "b.yml")
    with pytest.raises(RuleError, match="duplicate rule id"):
        load_rules([tmp_path])
    with pytest.raises(RuleError, match="does not exist"):
        load_rules([tmp_path / "nope"])


def test_shipped_pack_loads():
    rules = {r.id: r for r in load_rules([PACK])}
    assert {
        "trk-credential-stuffing",
        "trk-brute-force",
        "trk-password-spraying",
        "trk-bulk-export-burst",
        "trk-night-export",
        "trk-change-after-new-login",
        "trk-admin-new-network",
        "trk-unusual-hour-login",
    } <= set(rules)


def matches(detection: dict, event, features=None, condition="sel") -> bool:
    rule = parse_rule({"title": "t", "id": "m", "detection": {**detection, "condition": condition}})
    return bool(RuleEngine([rule]).evaluate(event, features or {}))


def test_modifiers():
    e = obs(
        "london", endpoint="/Reports/orders/export/", status=401, ip="81.2.69.10", duration=12.5
    )
    assert matches({"sel": {"type": "auth"}}, e)  # equals is case-insensitive
    assert not matches({"sel": {"type": "DATA"}}, e)
    assert matches({"sel": {"type": ["DATA", "AUTH"]}}, e)  # a list means any
    assert matches({"sel": {"status|in": [401, 403]}}, e)
    assert matches({"sel": {"endpoint|startswith": "/reports"}}, e)
    assert matches({"sel": {"endpoint|endswith": "/export/"}}, e)
    assert matches({"sel": {"endpoint|contains": "ORDERS"}}, e)
    assert matches({"sel": {"ip_address|cidr": "81.2.69.0/24"}}, e)
    assert not matches({"sel": {"ip_address|cidr": ["10.0.0.0/8", "2001:db8::/32"]}}, e)
    assert matches({"sel": {"status|gte": 401, "status|lt": 402}}, e)
    assert not matches({"sel": {"status|gt": 401}}, e)
    assert matches({"sel": {"duration|lte": 12.5}}, e)
    assert matches({"sel": {"session_id": None}}, e)  # null means empty
    assert matches({"sel": {"params.rows": "all"}}, obs("london", params={"rows": "all"}))
    assert matches({"sel": {"ctx.new_asn": True}}, e, {"new_asn": True})
    assert not matches({"sel": {"ctx.new_asn": True}}, e, {"new_asn": False})


def test_conditions():
    e = obs("london", status=401)
    sels = {"sel_a": {"type": "AUTH"}, "sel_b": {"status": 200}, "filter": {"country": "GB"}}
    assert matches(sels, e, condition="1 of sel_*")
    assert not matches(sels, e, condition="all of sel_*")
    assert not matches(sels, e, condition="sel_a and not filter")
    assert matches(sels, e, condition="sel_a and (sel_b or filter)")
    assert matches(sels, e, condition="not sel_b")
    assert matches(sels, e, condition="1 of them")
    with pytest.raises(RuleError, match="matches no selection"):
        parse_rule({"title": "t", "id": "x", "detection": {**sels, "condition": "1 of nothing*"}})
    with pytest.raises(RuleError, match="unexpected"):
        parse_rule({"title": "t", "id": "x", "detection": {**sels, "condition": "sel_a and"}})


def test_threshold_counts_distinct_values_by_event_time_with_history():
    rule = parse_rule(
        {
            "title": "t",
            "id": "th",
            "detection": {"sel": {"type": "AUTH", "status|gte": 400}, "condition": "sel"},
            "threshold": {
                "count": 3,
                "distinct": "username",
                "group_by": ["ip_address"],
                "timespan": "10m",
            },
            "action": {"flag": True, "tags": ["x"]},
        }
    )
    assert rule.prefilters  # type and status are pushed to the database query
    engine = RuleEngine([rule])
    e0 = obs("london", status=401, username="a", ip="1.2.3.4")
    history = [
        {
            "id": "h1",
            "timestamp": e0.timestamp - timedelta(minutes=8),
            "type": "AUTH",
            "status": 401,
            "username": "b",
            "ip_address": "1.2.3.4",
        },
        {
            "id": "h2",
            "timestamp": e0.timestamp - timedelta(minutes=20),
            "type": "AUTH",
            "status": 401,
            "username": "c",
            "ip_address": "1.2.3.4",
        },
        {
            "id": "h3",
            "timestamp": e0.timestamp - timedelta(minutes=1),
            "type": "AUTH",
            "status": 200,
            "username": "d",
            "ip_address": "1.2.3.4",
        },
    ]
    engine.start_batch({"th": history})
    assert engine.evaluate(e0, {}) == []  # a, b: two accounts (c is too old, d succeeded)
    e1 = obs("london", status=401, username="e", ip="1.2.3.4", minutes=1, id="e1")
    (f,) = engine.evaluate(e1, {})
    assert (
        f.flag and f.evidence["distinct"] == 3 and f.evidence["group"] == {"ip_address": "1.2.3.4"}
    )
    assert "3 distinct username in 10 min" in f.reason
    # another address is another group
    assert (
        engine.evaluate(
            obs("london", status=401, username="z", ip="9.9.9.9", minutes=2, id="z"), {}
        )
        == []
    )


# --- the shipped pack, pattern vs near-miss -----------------------------------------------
@pytest.fixture(scope="module")
def pack():
    return {r.id: r for r in load_rules([PACK])}


def fired(rule, events, features=None) -> list[bool]:
    engine = RuleEngine([rule])
    engine.start_batch({})
    return [bool(engine.evaluate(e, features or {})) for e in events]


def failed_login(i, *, username, ip, minutes):
    return obs("london", status=401, username=username, ip=ip, minutes=minutes, id=f"f{i}")


def test_credential_stuffing(pack):
    rule = pack["trk-credential-stuffing"]
    attack = [
        failed_login(i, username=f"victim{i}", ip="185.220.1.9", minutes=i * 0.1) for i in range(10)
    ]
    assert fired(rule, attack) == [False, False] + [True] * 8
    # near miss: the same three people mistyping from one office address, an hour apart
    office = [failed_login(i, username=f"u{i}", ip="62.30.10.5", minutes=i * 30) for i in range(3)]
    assert not any(fired(rule, office))


def test_brute_force(pack):
    rule = pack["trk-brute-force"]
    attack = [failed_login(i, username="alice", ip=f"185.220.1.{i}", minutes=i) for i in range(8)]
    assert fired(rule, attack)[-1] and sum(fired(rule, attack)) == 3
    typos = [failed_login(i, username="alice", ip="81.2.69.10", minutes=i * 3) for i in range(5)]
    assert not any(fired(rule, typos))


def test_password_spraying(pack):
    rule = pack["trk-password-spraying"]
    slow = [failed_login(i, username=f"acct{i}", ip="45.150.1.7", minutes=i * 20) for i in range(8)]
    result = fired(rule, slow)
    assert result[4:] == [True] * 4 and not any(result[:4])
    # the short-window stuffing rule does not see it: one guess every 20 minutes
    assert not any(fired(pack["trk-credential-stuffing"], slow))
    # near miss: four different users over six hours
    few = [failed_login(i, username=f"acct{i}", ip="45.150.1.7", minutes=i * 60) for i in range(4)]
    assert not any(fired(rule, few))


def export(i, minutes, username="alice"):
    return obs(
        "london",
        type="DATA",
        method="GET",
        endpoint=f"/reports/orders/export/?p={i}",
        minutes=minutes,
        username=username,
        id=f"x{i}",
    )


def test_bulk_export_burst(pack):
    rule = pack["trk-bulk-export-burst"]
    burst = [export(i, i * 0.3) for i in range(8)]
    assert fired(rule, burst) == [False] * 4 + [True] * 4
    daily = [export(i, i * 120) for i in range(8)]
    assert not any(fired(rule, daily))


def test_night_export(pack):
    rule = pack["trk-night-export"]
    night = {"local_hour": 2, "hour_rarity": 1.0, "user_events": 200}
    assert all(fired(rule, [export(0, 0)], night))
    # near misses: a night owl (the hour is usual), a day-time export, a brand-new user
    assert not any(fired(rule, [export(0, 0)], {**night, "hour_rarity": 0.1}))
    assert not any(fired(rule, [export(0, 0)], {**night, "local_hour": 14}))
    assert not any(fired(rule, [export(0, 0)], {**night, "user_events": 3}))


def test_change_after_new_login(pack):
    rule = pack["trk-change-after-new-login"]
    password = obs("london", type="ACCOUNT", endpoint="/account/password/")
    payment = obs("london", type="PAYMENT", endpoint="/payments/")
    (f,) = RuleEngine([rule]).evaluate(password, {"minutes_since_novel_login": 5})
    assert f.tag == "change_after_new_login" and not f.flag and f.score < 0.7
    assert all(fired(rule, [payment], {"minutes_since_novel_login": 30}))
    assert not any(fired(rule, [payment], {"minutes_since_novel_login": 600}))
    assert not any(fired(rule, [payment], {"minutes_since_novel_login": None}))
    browse = obs("london", type="OTHER", endpoint="/products/")
    assert not any(fired(rule, [browse], {"minutes_since_novel_login": 5}))


def test_admin_from_new_network(pack):
    rule = pack["trk-admin-new-network"]
    admin = obs("london", type="ADMIN", method="GET", endpoint="/admin/auth/user/")
    assert all(fired(rule, [admin], {"new_asn": True, "known_user": True}))
    assert not any(fired(rule, [admin], {"new_asn": False, "known_user": True}))
    assert not any(fired(rule, [admin], {"new_asn": True, "known_user": False}))
    api = obs("london", type="API")
    assert not any(fired(rule, [api], {"new_asn": True, "known_user": True}))


def test_suppress_action_is_carried_on_the_finding():
    rule = parse_rule(
        {
            "title": "Corporate VPN",
            "id": "vpn",
            "detection": {"sel": {"ip_address|cidr": "62.30.12.0/24"}, "condition": "sel"},
            "action": {"suppress": ["impossible_travel"], "tags": ["corporate_vpn", "allow"]},
        }
    )
    (f,) = RuleEngine([rule]).evaluate(obs("new_york", ip="62.30.12.9"), {})
    assert f.suppresses == ("impossible_travel",)
    assert f.tags == ("corporate_vpn", "allow") and f.detector == "rule:vpn"


def test_unusual_hour_login(pack):
    rule = pack["trk-unusual-hour-login"]
    night = {"event_local_hour": 3, "hour_rarity": 1.0, "user_events": 120}
    login = obs("munich", asn=64620)
    (f,) = RuleEngine([rule]).evaluate(login, night)
    assert f.tag == "unusual_hour" and not f.flag and f.score == 0.5
    # near misses: a night owl, a failed attempt, an afternoon login, a new user
    assert not any(fired(rule, [login], {**night, "hour_rarity": 0.2}))
    assert not any(fired(rule, [obs("munich", status=401)], night))
    assert not any(fired(rule, [login], {**night, "event_local_hour": 15}))
    assert not any(fired(rule, [login], {**night, "user_events": 4}))


def test_failures_are_judged_by_outcome_not_status(pack):
    """A login form answers a wrong password with 200: the outcome makes it a failure."""
    rule = pack["trk-credential-stuffing"]
    attack = [
        obs("london", status=200, outcome="failure", username=f"v{i}", ip="185.220.1.9", id=f"a{i}")
        for i in range(4)
    ]
    assert fired(rule, attack) == [False, False, True, True]
    assert obs("london", status=200, outcome="failure").failed
    # Without an outcome the status decides, as when the row was stored.
    assert obs("london", status=401).failed and not obs("london", status=302).failed


def test_params_lists_match_any_item():
    change = obs("london", type="ACCOUNT", params={"fields": ["email", "is_superuser"]})
    assert matches({"sel": {"params.fields|in": ["is_superuser"]}}, change)
    assert matches({"sel": {"params.fields|contains": "mail"}}, change)
    assert not matches({"sel": {"params.fields": "password"}}, change)


def test_takeover_change_after_new_login(pack):
    rule = pack["trk-takeover-change"]
    superuser = obs("london", type="ACCOUNT", params={"fields": ["is_superuser"]})
    (f,) = RuleEngine([rule]).evaluate(superuser, {"minutes_since_novel_login": 5})
    assert f.tag == "account_takeover" and f.flag and f.severity == "high"
    assert not any(fired(rule, [superuser], {"minutes_since_novel_login": 90}))
    assert not any(fired(rule, [superuser], {"minutes_since_novel_login": None}))
    name_only = obs("london", type="ACCOUNT", params={"fields": ["first_name"]})
    assert not any(fired(rule, [name_only], {"minutes_since_novel_login": 5}))
    tagged = pack["trk-change-after-new-login"]
    email = obs("london", type="ACCOUNT", endpoint="/admin/", params={"fields": ["email"]})
    assert all(fired(tagged, [email], {"minutes_since_novel_login": 5}))
