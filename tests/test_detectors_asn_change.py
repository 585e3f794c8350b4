"""ASN change: baseline window, learning period, weighting by novelty and network kind."""

from __future__ import annotations

from datetime import timedelta

import pytest

from detectors.asn_change import AsnChange
from detectors.profile import UserProfile
from tests.detection_helpers import PHONE, T0, ctx, obs, trained_profile


def score(o, profile, **params):
    det = AsnChange(**params)
    det.validate()
    det.fit()
    return det.score(o, profile, ctx(o, profile))


def test_known_network_is_silent():
    assert score(obs("london", minutes=5), trained_profile()) == []


def test_learning_period_by_events_and_days():
    few = trained_profile(events=3, days=10)
    assert score(obs("london", asn=65100, isp="Anon Hosting Ltd"), few) == []
    young = trained_profile(events=20, days=1)
    assert score(obs("london", asn=65100, isp="Anon Hosting Ltd"), young) == []
    assert score(obs("london", asn=65100, isp="Anon Hosting Ltd"), young, min_days=0.5) != []


def test_no_profile_or_no_asn_is_silent():
    assert score(obs("london", asn=65100), None) == []
    assert score(obs("london", asn=None), trained_profile()) == []


def test_new_residential_network_alone_scores_low():
    (f,) = score(obs("london", asn=64999, isp="Other Broadband"), trained_profile())
    assert f.detector == "asn_change" and f.tag == "new_asn"
    assert f.score == pytest.approx(0.35) and f.severity == "low"
    assert f.evidence["network_kind"] == "other" and not f.evidence["new_country"]
    assert "AS64999" in f.reason


def test_what_else_is_new_raises_the_score():
    base = score(obs("london", asn=64999, isp="X"), trained_profile())[0].score
    with_country = score(obs("paris", asn=64999, isp="X"), trained_profile())[0]
    with_both = score(obs("paris", asn=64999, isp="X", device=PHONE), trained_profile())[0]
    assert base < with_country.score < with_both.score
    assert with_both.evidence["new_country"] and with_both.evidence["new_device"]
    assert "new country FR" in with_both.reason and "new device" in with_both.reason


def test_hosting_scores_higher_than_mobile_carrier():
    profile = trained_profile()
    hosting = score(obs("london", asn=65100, isp="Anon Hosting Ltd"), profile)[0]
    mobile = score(obs("london", asn=64800, isp="Albion Mobile"), profile)[0]
    plain = score(obs("london", asn=64999, isp="Other Broadband"), profile)[0]
    assert mobile.score < plain.score < hosting.score
    assert (
        hosting.evidence["network_kind"] == "hosting"
        and mobile.evidence["network_kind"] == "mobile"
    )
    # a takeover through a VPN exit in the owner's own country, on the attacker's device
    takeover = score(obs("london", asn=65110, isp="FastVPN Exit", device=PHONE), profile)[0]
    assert takeover.score >= 0.85 and takeover.severity == "high"


def test_hosting_and_mobile_asn_lists_override_names():
    profile = trained_profile()
    f = score(obs("london", asn=64999, isp="Plain Name"), profile, hosting_asns=[64999])[0]
    assert f.evidence["network_kind"] == "hosting"
    f = score(
        obs("london", asn=64999, isp="Plain Name"), profile, mobile_asns=[64999], hosting_asns=[]
    )[0]
    assert f.evidence["network_kind"] == "mobile"


def test_baseline_window_forgets_old_networks():
    profile = trained_profile(days=100)  # last London broadband use ~3 days before T0
    later = obs("london", at=T0 + timedelta(days=60))
    assert score(later, profile) != []  # not used in the last 45 days
    assert score(later, profile, baseline_days=90) == []


def test_min_score_filters_low_findings():
    assert score(obs("london", asn=64999, isp="X"), trained_profile(), min_score=0.5) == []


@pytest.mark.parametrize(
    "params, name",
    [
        ({"baseline_days": -1}, "baseline_days"),
        ({"base_score": 2}, "base_score"),
        ({"hosting_asns": ["x"]}, "hosting_asns"),
        ({"min_events": "5"}, "min_events"),
    ],
)
def test_invalid_parameters_are_named(params, name):
    with pytest.raises(ValueError, match=name):
        AsnChange(**params).validate()


def test_profile_known_respects_window():
    p = UserProfile()
    o = obs("london")
    p.learn(o)
    now = o.epoch
    assert p.known("asn", "64600", now, 3600)
    assert not p.known("asn", "64600", now + 7200, 3600)
    assert p.known("asn", "64600", now + 7200, None)
