"""Volume baselines on plain data: exports, data access and payments per day and hour against
the user's own history (robust threshold, minimum history) and the population's."""

from __future__ import annotations

from datetime import timedelta

from detectors.engine import Engine
from detectors.population import Population
from detectors.profile import UserProfile
from detectors.volume import VolumeBaseline, bucket
from tests.detection_helpers import T0, obs


def export(day: float, minutes: float = 0, username: str = "alice"):
    return obs(
        "london",
        at=T0 + timedelta(days=day),
        minutes=minutes,
        type="DATA",
        method="GET",
        endpoint="/reports/sales/export/",
        username=username,
        id=f"x-{username}-{day}-{minutes}",
    )


def login(day: float, username: str = "alice"):
    return obs("london", at=T0 + timedelta(days=day), username=username, id=f"l-{username}-{day}")


def usual_days(engine, profiles, days=14, per_day=(1, 2), username="alice", population=None):
    for d in range(days):
        batch = [login(d, username)]
        batch += [export(d, 60 + 30 * i, username) for i in range(per_day[d % len(per_day)])]
        engine.run(batch, profiles, population)


def test_a_working_day_of_ten_times_the_usual_exports_is_flagged_and_explained():
    engine = Engine([VolumeBaseline().fit()])
    profiles: dict[str, UserProfile] = {}
    usual_days(engine, profiles)
    # Day 14: 27 exports spread over the working day, same place and device.
    day = [login(14)] + [export(14, 20 * i) for i in range(27)]
    verdicts = engine.run(day, profiles)
    flagged = [v for v in verdicts[1:] if v.flagged]
    assert len(flagged) == 23  # everything after the threshold (usual 2 → 4)
    assert not any(v.flagged for v in verdicts[1:5])  # up to the threshold (4)
    last = verdicts[-1].findings[0]
    assert last.tag == "unusual_volume" and last.reason == "27 exports today, usual ≤ 2"
    assert last.evidence["usual"] == 2 and last.evidence["window"] == "day"


def test_an_ordinary_busy_day_is_not_flagged_and_an_attack_never_becomes_the_baseline():
    engine = Engine([VolumeBaseline().fit()])
    profiles: dict[str, UserProfile] = {}
    usual_days(engine, profiles, per_day=(1, 2, 3))
    busy = [login(14)] + [export(14, 30 * i) for i in range(5)]
    assert not any(v.findings for v in engine.run(busy, profiles))
    attack = engine.run([export(15, 10 * i) for i in range(30)], profiles)
    accepted = sum(not v.flagged for v in attack)
    assert 0 < accepted < 30
    engine.run([login(16)], profiles)
    # Only the exports that were not flagged entered the history: the attack did not.
    assert profiles["n:alice"].data["vol"]["hist"]["export"]["d"][-1] == accepted


def test_no_verdict_before_the_minimum_history_without_population_data():
    engine = Engine([VolumeBaseline(min_days=7).fit()])
    profiles: dict[str, UserProfile] = {}
    usual_days(engine, profiles, days=3)
    verdicts = engine.run([export(3, i) for i in range(40)], profiles)
    assert not any(v.findings for v in verdicts)


def test_the_population_judges_a_user_with_little_history():
    detector = VolumeBaseline(min_days=7).fit()
    engine = Engine([detector])
    population = Population()
    for i in range(300):  # 300 user-days with 0-2 exports
        population.add("vol_export", str(bucket(i % 3)))
    profiles: dict[str, UserProfile] = {}
    usual_days(engine, profiles, days=2, population=population)
    verdicts = engine.run([export(2, i) for i in range(15)], profiles, population)
    assert verdicts[-1].flagged
    assert "fewer than" in verdicts[-1].findings[0].reason


def test_payments_and_data_access_have_their_own_baselines():
    detector = VolumeBaseline().fit()
    assert detector.category(obs(type="PAYMENT")) == "payment"
    assert detector.category(obs(type="DATA", endpoint="/customers/42/")) == "data"
    assert detector.category(obs(type="DATA", endpoint="/reports/x/export/")) == "export"
    assert detector.category(obs(type="AUTH")) == ""
    assert VolumeBaseline(categories=("payment",)).fit().category(obs(type="DATA")) == ""


# --- peer groups --------------------------------------------------------------------------


def event(day: float, minutes: float, type: str, username: str):
    endpoint = {"ADMIN": "/admin/auth/user/", "PAYMENT": "/payments/"}.get(type, "/")
    return obs(
        "london",
        at=T0 + timedelta(days=day),
        minutes=minutes,
        type=type,
        endpoint=endpoint,
        username=username,
        id=f"{type}-{username}-{day}-{minutes}",
    )


def peers(population: Population, group: str, counts, days: int = 300) -> None:
    """``days`` closed user-days of ``group`` cycling through ``counts`` exports."""
    for i in range(days):
        n = counts[i % len(counts)]
        population.add("vol_export", str(bucket(n)))
        population.add(f"vol_export@{group}", str(bucket(n)))


def test_a_users_peer_group_is_learned_from_their_activity_mix():
    engine = Engine([VolumeBaseline().fit()])
    profiles: dict[str, UserProfile] = {}
    for d in range(6):
        batch = [login(d, "ann"), export(d, 60, "ann"), event(d, 70, "PAYMENT", "ann")]
        batch += [login(d, "bob"), event(d, 80, "PAYMENT", "bob")]
        batch += [login(d, "sue"), event(d, 90, "ADMIN", "sue")]
        if d % 2:  # sue exports every other day: still a habit (≥ 25 % of her days)
            batch.append(export(d, 95, "sue"))
        engine.run(batch, profiles)
    groups = {name: profiles[f"n:{name}"].data["vol"]["g"] for name in ("ann", "bob", "sue")}
    assert groups == {"ann": "DATA+PAYMENT", "bob": "PAYMENT", "sue": "ADMIN+DATA"}


def test_a_user_with_little_history_is_judged_against_their_peers_not_the_whole_site():
    population = Population()
    peers(population, "DATA", (0, 1, 2))  # colleagues who export a little
    peers(population, "ADMIN+DATA", (10, 14, 20))  # the data team: a dozen a day is normal
    engine = Engine([VolumeBaseline(min_days=7).fit()])
    profiles: dict[str, UserProfile] = {}
    usual_days(engine, profiles, days=2, population=population)  # alice: group DATA
    for d in range(2):
        engine.run(
            [login(d, "dan"), export(d, 5, "dan"), event(d, 9, "ADMIN", "dan")],
            profiles,
            population,
        )
    alice = engine.run([export(2, i) for i in range(12)], profiles, population)
    dan = engine.run([export(2, i, "dan") for i in range(12)], profiles, population)
    assert alice[-1].flagged and not any(v.findings for v in dan)
    reason = alice[-1].findings[0].reason
    assert reason.startswith("12 exports today; fewer than 0.00% of their peers' days")
    assert alice[-1].findings[0].evidence["peer_group"] == "DATA"
    # The whole site alone would not have judged 12 rare (half its days reach it).
    site_only = Engine([VolumeBaseline(min_days=7, peer_min_days=10**6).fit()])
    fresh: dict[str, UserProfile] = {}
    usual_days(site_only, fresh, days=2, population=population)
    assert not any(
        v.findings for v in site_only.run([export(2, i) for i in range(12)], fresh, population)
    )


def rising_history(engine, profiles, population):
    """Ten days of one export, then 4, 6 and 7: each day under the bound of the days before."""
    for d, n in enumerate([1] * 10 + [4, 6, 7]):
        batch = [login(d)] + [export(d, 30 + 10 * i) for i in range(n)]
        assert not any(v.flagged for v in engine.run(batch, profiles, population))


def test_a_user_whose_own_baseline_drifted_upward_is_still_compared_with_their_peers():
    population = Population()
    peers(population, "DATA", (0, 1, 2))
    engine = Engine([VolumeBaseline().fit()])
    profiles: dict[str, UserProfile] = {}
    rising_history(engine, profiles, population)
    # One export an hour (the hourly window stays quiet), twelve in the day.
    verdicts = engine.run(
        [login(13)] + [export(13, 5 + 70 * i) for i in range(12)], profiles, population
    )
    flagged = [i for i, v in enumerate(verdicts[1:], 1) if v.flagged]
    # The own bound (2 × the 95th percentile 6 = 12) lets all 12 pass; the peers do not:
    # from the 8th (2 × min_count, above 3 × the median day 1) no peer's day reaches it.
    assert flagged == list(range(8, 13))
    finding = verdicts[8].findings[0]
    assert finding.reason == (
        "8 exports today; usual ≤ 6 for this user (a typical day 1), ≤ 2 for their peers"
    )
    assert finding.evidence["peer_group"] == "DATA" and finding.evidence["peer_usual"] == 2

    # Without peer data the same day passes: the drifted baseline alone allows it.
    alone = Engine([VolumeBaseline().fit()])
    fresh: dict[str, UserProfile] = {}
    rising_history(alone, fresh, None)
    day = alone.run([login(13)] + [export(13, 5 + 70 * i) for i in range(12)], fresh)
    assert not any(v.flagged for v in day)


def test_findings_above_the_own_bound_name_the_peers_usual_day_too():
    population = Population()
    peers(population, "DATA", (0, 1, 2, 3))
    engine = Engine([VolumeBaseline().fit()])
    profiles: dict[str, UserProfile] = {}
    usual_days(engine, profiles, population=population)
    verdicts = engine.run(
        [login(14)] + [export(14, 20 * i) for i in range(27)], profiles, population
    )
    assert verdicts[-1].findings[0].reason == (
        "27 exports today; usual ≤ 2 for this user, ≤ 3 for their peers"
    )


def test_peer_parameters_are_validated():
    for params in ({"peer_types": ["A+B"]}, {"peer_min_share": 2}, {"peer_ratio": 0.5}):
        try:
            VolumeBaseline(**params).validate()
        except ValueError as exc:
            assert next(iter(params)) in str(exc)
        else:
            raise AssertionError(f"{params} must be refused")
