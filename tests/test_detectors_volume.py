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
