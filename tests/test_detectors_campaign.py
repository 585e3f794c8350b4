"""Distributed attacks on plain data: site-wide failed-login baselines learned from history,
a botnet campaign (one or two tries per address, many names unknown) flagged, an ordinary
day of typos not."""

from __future__ import annotations

from datetime import timedelta

from detectors.campaign import FailureCampaign
from detectors.engine import Engine
from detectors.population import Population
from detectors.profile import UserProfile
from tests.detection_helpers import T0, obs


def failure(hours: float, username: str, ip: str = "81.2.69.10", bot: bool = False):
    extra = {"asn": 64610, "ua": "Mozilla/5.0 (X11; Linux x86_64) Firefox/115.0"} if bot else {}
    return obs(
        "london",
        at=T0 + timedelta(hours=hours),
        status=401,
        username=username,
        ip=ip,
        id=f"f-{username}-{hours}",
        **extra,
    )


def success(hours: float, username: str):
    return obs(
        "london", at=T0 + timedelta(hours=hours), username=username, id=f"s-{username}-{hours}"
    )


def site_history(engine, profiles, population, days=5):
    """Twenty users signing in every few hours, with a typo now and then."""
    for h in range(days * 24):
        batch = [success(h + 0.1, f"user{(h + k) % 20}") for k in range(3)]
        if h % 5 == 0:
            batch.append(failure(h + 0.2, f"user{h % 20}"))
        engine.run(batch, profiles, population)


def test_a_botnet_campaign_is_flagged_once_it_stands_out_from_the_sites_history():
    engine = Engine([FailureCampaign().fit()])
    profiles: dict[str, UserProfile] = {}
    population = Population()
    site_history(engine, profiles, population)
    start = 5 * 24 + 1
    # 45 addresses, one or two tries each over two hours; a third of the names do not exist.
    attempts = []
    for i in range(45):
        for j in range(1 + i % 2):
            name = f"nobody{i}" if i % 3 == 0 else f"user{i % 20}"
            attempts.append(
                failure(start + (i * 2 + j) / 34, name, ip=f"90.80.{i}.{j + 1}", bot=True)
            )
    attempts.sort(key=lambda o: o.epoch)
    verdicts = engine.run(attempts, profiles, population)
    flagged = sum(v.flagged for v in verdicts)
    assert flagged / len(verdicts) >= 0.8
    last = verdicts[-1].findings[0]
    assert last.tag == "login_campaign" and "usual ≤" in last.reason
    assert any(v.findings[0].evidence["unknown_account"] for v in verdicts if v.findings)


def test_an_ordinary_day_of_typos_is_not_a_campaign():
    engine = Engine([FailureCampaign().fit()])
    profiles: dict[str, UserProfile] = {}
    population = Population()
    site_history(engine, profiles, population, days=6)
    verdicts = engine.run(
        [failure(6 * 24 + 0.5, "user3"), failure(6 * 24 + 0.6, "user4")], profiles, population
    )
    assert not any(v.findings for v in verdicts)


def test_nothing_is_judged_before_the_minimum_history():
    engine = Engine([FailureCampaign(min_history_hours=48).fit()])
    population = Population()
    verdicts = engine.run([failure(i / 60, f"nobody{i}") for i in range(60)], {}, population)
    assert not any(v.findings for v in verdicts)
    assert population.count("camp_fail", str(int(failure(0, "x").epoch) // 3600)) == 60


def test_the_owner_mistyping_during_a_campaign_is_noted_not_flagged():
    engine = Engine([FailureCampaign().fit()])
    profiles: dict[str, UserProfile] = {}
    population = Population()
    site_history(engine, profiles, population)
    start = 5 * 24 + 1
    bots = [failure(start + i / 60, f"nobody{i}", ip=f"90.80.{i}.9", bot=True) for i in range(30)]
    engine.run(bots, profiles, population)
    (owner,) = engine.run([failure(start + 0.6, "user3")], profiles, population)
    (finding,) = owner.findings
    assert not owner.flagged and finding.score == 0.4 and finding.evidence["familiar"]


def test_an_unknown_name_counts_once_an_hour_however_often_it_is_retried():
    """A claimed name matching no account is stored masked (``?<chars>…<keyed hash>``, the
    same for the same name): one person retrying a mistyped name is one unknown name, a list
    of names is many; every attempt still counts as a failure."""
    engine = Engine([FailureCampaign().fit()])
    population = Population()
    hour = str(int(failure(0, "x").epoch) // 3600)
    retried = "?ha\u2026" + "0" * 24
    engine.run([failure(i / 60, retried) for i in range(6)], {}, population)
    assert population.count("camp_fail", hour) == 6
    assert population.count("camp_acct", hour) == 1
    assert population.count("camp_unknown", hour) == 1
    listed = [failure(0.5 + i / 60, f"?n{i}\u2026{i:024x}") for i in range(5)]
    engine.run(listed, {}, population)
    assert population.count("camp_unknown", hour) == 6 and population.count("camp_fail", hour) == 11
    # A known account failing is not an unknown name.
    profiles = {"n:user1": UserProfile(key="n:user1")}
    engine.run([success(0.7, "user1")], profiles, population)
    engine.run([failure(0.8, "user1")], profiles, population)
    assert population.count("camp_unknown", hour) == 6 and population.count("camp_acct", hour) == 7
