"""Impossible travel: edge cases of distance, time, accuracy and allow-lists (no database)."""

from __future__ import annotations

import math
from datetime import datetime
from datetime import timezone as dt_timezone

import pytest

from detectors.base import Context
from detectors.geo import haversine_km
from detectors.impossible_travel import ImpossibleTravel
from detectors.profile import UserProfile
from tests.detection_helpers import T0, ctx, obs

UTC = dt_timezone.utc


def located_profile(previous) -> UserProfile:
    p = UserProfile(key="n:alice")
    p.note(previous)
    p.learn(previous)
    ImpossibleTravel().update(previous, p, ctx(previous, p))
    return p


def judge(previous, current, **params):
    det = ImpossibleTravel(**params)
    det.validate()
    det.fit()
    profile = located_profile(previous) if previous is not None else UserProfile(key="n:alice")
    return det.score(current, profile, ctx(current, profile))


def test_haversine_known_distances():
    assert haversine_km(51.5074, -0.1278, 51.5074, -0.1278) == 0
    assert 340 < haversine_km(51.5074, -0.1278, 48.8566, 2.3522) < 345  # London-Paris
    assert haversine_km(0, 0, 0, 180) == pytest.approx(math.pi * 6371.0088, rel=1e-6)  # antipodes
    assert haversine_km(90, 0, -90, 0) == pytest.approx(math.pi * 6371.0088, rel=1e-6)


def test_first_located_event_of_a_user_is_not_judged():
    assert judge(None, obs("lagos")) == []


def test_same_place_with_zero_time_gap_is_fine():
    assert judge(obs("london"), obs("london", minutes=0)) == []


def test_far_place_with_zero_time_gap_fires_at_infinite_speed():
    (f,) = judge(obs("london"), obs("lagos", asn=64680, minutes=0))
    assert f.detector == "impossible_travel" and f.tag == "impossible_travel"
    assert f.evidence["speed_kmh"] is None and f.score == 1.0 and f.flag
    assert "instantly" in f.reason


def test_london_to_lagos_in_42_minutes_reads_like_a_sentence():
    (f,) = judge(obs("london"), obs("lagos", asn=64680, minutes=42))
    assert f.reason.startswith("London → Lagos, 5,0")
    assert " km in 42 min = " in f.reason and f.reason.split("= ")[1].startswith("7,")
    assert f.severity == "high"
    assert 0.75 < f.score <= 1
    assert f.evidence["from"]["city"] == "London" and f.evidence["to"]["city"] == "Lagos"
    assert f.evidence["elapsed_s"] == 42 * 60


def test_antipodes_within_a_day_fire():
    prev = obs("london", latlon=(0.0, 0.0), radius=5)
    cur = obs("tokyo", latlon=(0.0, 180.0), radius=5, asn=64650, minutes=60 * 12)
    (f,) = judge(prev, cur)
    assert f.evidence["distance_km"] == pytest.approx(20015.1, abs=1)
    assert f.evidence["speed_kmh"] == pytest.approx(20005 / 12, rel=0.01)


def test_missing_geo_is_not_judged_and_not_remembered():
    prev = obs("london")
    no_geo = obs(None, latlon=None, minutes=1, country="")
    assert judge(prev, no_geo) == []
    p = located_profile(prev)
    ImpossibleTravel().update(no_geo, p, ctx(no_geo, p))
    assert p.location["city"] == "London"


def test_country_only_records_are_not_positions():
    # The GB country-only record sits at the country centroid with a 200 km radius.
    country_only = obs(None, latlon=(54.0, -2.0), radius=200, country="GB", minutes=1, asn=64900)
    assert judge(obs("london"), country_only) == []
    # ... and never becomes the "previous" position either.
    assert judge(country_only, obs("lagos", asn=64680, minutes=2)) == []


def test_radius_over_the_limit_is_ignored():
    far_guess = obs("lagos", radius=1000, minutes=5, asn=64680)
    assert judge(obs("london"), far_guess) == []


def test_accuracy_radius_larger_than_the_distance_never_fires():
    # London -> Paris (344 km) instantly, but each position is only known within 200 km.
    assert (
        judge(obs("london", radius=200), obs("paris", radius=200, minutes=0), min_distance_km=0)
        == []
    )
    # With city-accurate positions the same jump is impossible.
    (f,) = judge(obs("london", radius=10), obs("paris", radius=10, minutes=0), min_distance_km=0)
    assert f.evidence["effective_distance_km"] == pytest.approx(344 - 20, abs=2)


def test_real_flight_at_plausible_speed_is_fine():
    # London -> New York (5,570 km) landing 8 h later: ~700 km/h.
    assert judge(obs("london"), obs("new_york", asn=65010, minutes=8 * 60)) == []
    # Same trip in 3 h is not a flight.
    assert len(judge(obs("london"), obs("new_york", asn=65010, minutes=3 * 60))) == 1


def test_short_hop_between_nearby_towns_is_fine():
    assert judge(obs("berlin", asn=64620), obs("potsdam", asn=64620, minutes=10)) == []
    assert judge(obs("london"), obs("reading", minutes=5)) == []


def test_phone_geolocated_to_the_capital_with_matching_radius_is_fine():
    # Home broadband in Manchester, a minute later the carrier puts the phone in London
    # (262 km away) with a 500 km radius.
    home = obs("manchester")
    phone = obs("london", asn=64800, isp="Albion Mobile", radius=500, minutes=1)
    assert judge(home, phone) == []
    # Munich -> Berlin carrier (504 km, radius 400): still inside the circle.
    assert judge(obs("munich", asn=64620), obs("berlin", asn=64820, radius=400, minutes=1)) == []


def test_allow_listed_networks_and_asns_are_ignored():
    prev = obs("london")
    vpn = obs("new_york", asn=64700, ip="62.30.12.7", minutes=5)
    assert len(judge(prev, vpn)) == 1
    assert judge(prev, vpn, allow_networks=["62.30.12.0/24"]) == []
    assert judge(prev, vpn, allow_asns=[64700]) == []
    satellite = obs("new_york", asn=65200, isp="SkyLink Satellite", minutes=5)
    assert judge(prev, satellite) == []


def test_return_to_an_established_place_and_network_is_not_judged():
    det = ImpossibleTravel()
    det.fit()
    p = UserProfile(key="n:alice")
    for i in range(5):  # home broadband in London, established
        o = obs("london", minutes=-10000 + i)
        p.note(o)
        p.learn(o)
    abroad = obs("sydney", asn=64660, minutes=-60)
    p.learn(abroad)
    det.update(abroad, p, ctx(abroad, p))
    home = obs("london", minutes=0)
    assert det.score(home, p, ctx(home, p)) == []
    # A hosting exit in London is another network: judged.
    exit_node = obs("london", asn=65100, isp="Anon Hosting Ltd", minutes=0)
    assert len(det.score(exit_node, p, ctx(exit_node, p))) == 1


def test_judged_by_event_timestamps_not_the_wall_clock():
    old = datetime(2001, 5, 1, 12, 0, tzinfo=UTC)
    prev, cur = obs("london", at=old), obs("lagos", asn=64680, at=old, minutes=42)
    recent = judge(obs("london"), obs("lagos", asn=64680, minutes=42))
    assert judge(prev, cur)[0].reason == recent[0].reason


def test_older_event_arriving_late_compares_with_absolute_gap():
    later = obs("london", minutes=60)
    p = located_profile(later)
    earlier = obs("lagos", asn=64680, minutes=20)
    (f,) = ImpossibleTravel().score(earlier, p, Context(now=earlier.timestamp, features={}))
    assert f.evidence["elapsed_s"] == 40 * 60
    # and does not move the user's last position back in time
    p.set_location(earlier)
    assert p.location["city"] == "London"


@pytest.mark.parametrize(
    "params, message",
    [
        ({"max_speed_kmh": 0}, "max_speed_kmh"),
        ({"allow_networks": ["10.0.0.0/33"]}, "allow_networks"),
        ({"allow_asns": ["AS1"]}, "allow_asns"),
        ({"severity": "urgent"}, "severity"),
    ],
)
def test_invalid_parameters_are_named(params, message):
    with pytest.raises(ValueError, match=message):
        ImpossibleTravel(**params).validate()


def test_sklearn_style_parameters():
    det = ImpossibleTravel(max_speed_kmh=900)
    assert det.get_params()["max_speed_kmh"] == 900
    assert det.set_params(min_distance_km=100) is det and det.min_distance_km == 100
    assert det.fit() is det and det.networks_ == ()
    with pytest.raises(ValueError, match="no parameter"):
        det.set_params(speed=1)
    assert T0.tzinfo is not None


def test_a_suspicious_event_does_not_move_the_last_position():
    det = ImpossibleTravel().fit()
    p = located_profile(obs("munich", asn=64620))
    stranger = obs("berlin", asn=64620, minutes=60)
    c = ctx(stranger, p)
    c.suspicious = True
    det.update(stranger, p, c)
    assert p.location["city"] == "Munich"
    c.suspicious = False
    det.update(stranger, p, c)
    assert p.location["city"] == "Berlin"
