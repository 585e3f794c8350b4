"""Freeman et al. risk score: likelihood ratios with smoothing, per-feature evidence."""

from __future__ import annotations

import math

import pytest

from detectors.population import Population, counter_key
from detectors.risk import FEATURES, FreemanRiskScore, feature_values
from tests.detection_helpers import PHONE, ctx, obs, trained_profile


def population_of(observations) -> Population:
    pop = Population()
    for o in observations:
        for feature, value in feature_values(o).items():
            pop.add(feature, value)
    return pop


@pytest.fixture
def world():
    """A population of 20 London users on Thames Broadband/desktop and 5 Berliners."""
    crowd = [obs("london", username=f"u{i}") for i in range(200)]
    crowd += [
        obs("berlin", asn=64620, isp="Spree Kabel", ip="91.60.1.9", username=f"b{i}")
        for i in range(50)
    ]
    return population_of(crowd)


def run(o, profile, pop, **params):
    det = FreemanRiskScore(**params)
    det.validate()
    c = ctx(o, profile, pop)
    return det, det.score(o, profile, c), c


def test_usual_login_scores_nothing(world):
    det, found, c = run(obs("london", minutes=1), trained_profile(), world, min_score=0.0)
    (f,) = found
    assert f.score < 0.01
    assert all(part["log_ratio"] < 0 for part in f.evidence["features"].values())


def test_everything_new_scores_high_and_names_the_drivers(world):
    attacker = obs(
        "lagos", asn=65120, isp="Bulletproof Cloud", ip="193.32.2.5", device=PHONE, ua="curl/8"
    )
    profile = trained_profile(events=60)
    _, (f,), _ = run(attacker, profile, world)
    assert f.score > 0.9 and f.severity == "high"
    assert set(f.evidence["features"]) == set(FEATURES)
    # an unseen value's ratio is (n_u + lam) / lam, clipped
    assert f.evidence["features"]["asn"]["log_ratio"] == pytest.approx(math.log(61), abs=1e-3)
    assert f.evidence["features"]["asn"]["user_count"] == 0
    assert len(f.evidence["drivers"]) == 3 and "unusual" in f.reason


def test_partly_new_login_scores_in_between(world):
    profile = trained_profile(events=60)
    hotel = obs("madrid", asn=65010, isp="Lodging Wifi Co", ip="203.0.0.9")
    _, found, _ = run(hotel, profile, world, min_score=0.0)
    attacker = obs("madrid", asn=65010, isp="Lodging Wifi Co", ip="203.0.0.9", device=PHONE, ua="x")
    _, (worse,), _ = run(attacker, profile, world, min_score=0.0)
    assert found[0].score < worse.score


def test_user_without_history_is_not_judged(world):
    _, found, _ = run(obs("lagos", asn=65120), trained_profile(events=3), world)
    assert found == []
    _, found, _ = run(obs("lagos", asn=65120), None, world)
    assert found == []


def test_only_configured_types(world):
    profile = trained_profile(events=60)
    far = obs("lagos", asn=65120, device=PHONE, ua="curl", type="API")
    assert run(far, profile, world)[1] == []
    assert run(far, profile, world, types=["AUTH", "API"])[1] != []


def test_laplace_smoothing_for_values_never_seen_in_the_population(world):
    profile = trained_profile(events=60)
    det = FreemanRiskScore()
    o = obs("london", asn=1, ip="1.1.1.1")
    parts = det.contributions(o, profile, ctx(o, profile, world))
    g_total, g_distinct = world.total("asn"), world.distinct("asn")
    p_global = 1 / (g_total + g_distinct + 1)
    p_user = det.smoothing * p_global / (profile.total("asn") + det.smoothing)
    assert parts["asn"]["log_ratio"] == pytest.approx(
        max(-6, min(6, math.log(p_global / p_user))), abs=1e-3
    )


def test_update_counts_population_for_scored_types_only():
    pop = Population()
    det = FreemanRiskScore()
    profile = trained_profile()
    login = obs("london")
    det.update(login, profile, ctx(login, profile, pop))
    assert pop.count("asn", "64600") == 1 and pop.total("asn") == 1 and pop.distinct("asn") == 1
    api = obs("london", type="API")
    det.update(api, profile, ctx(api, profile, pop))
    assert pop.total("asn") == 1
    assert counter_key("asn", "64600") in pop.changed()


def test_long_values_are_hashed_in_counter_keys():
    key = counter_key("ua", "x" * 500)
    assert len(key) < 200 and key.startswith("ua:h:")


def test_invalid_features_are_named():
    with pytest.raises(ValueError, match="features"):
        FreemanRiskScore(features=["ip", "shoe_size"]).validate()
