"""Session hijack on plain data: a live session replayed from another network and browser."""

from __future__ import annotations

from detectors.engine import Engine
from detectors.profile import UserProfile
from detectors.registry import build_all
from detectors.session import SessionHijack
from tests.detection_helpers import PHONE, obs

SESSION = "a1b2c3d4e5f60718293a4b5c6d7e8f90" * 2
ATTACKER = ("Other", "Linux", "Firefox")


def owner(minutes: float, **kw):
    return obs("london", minutes=minutes, session_id=SESSION, id=f"o-{minutes}", **kw)


def replay(minutes: float, **kw):
    kw.setdefault("ip", "81.2.70.77")  # another block of the same ISP, in Manchester
    return obs(
        "manchester",
        minutes=minutes,
        session_id=SESSION,
        device=ATTACKER,
        ua="Mozilla/5.0 (X11; Linux x86_64; rv:109.0) Gecko/20100101 Firefox/115.0",
        type="DATA",
        method="GET",
        endpoint="/reports/orders/export/",
        id=f"r-{minutes}",
        **kw,
    )


def test_a_session_replayed_from_another_network_and_browser_is_flagged_and_explained():
    engine = Engine([SessionHijack()])
    profiles: dict[str, UserProfile] = {}
    verdicts = engine.run(
        [owner(0), owner(3, type="API"), replay(9), replay(10), owner(12, type="API")], profiles
    )
    assert [v.flagged for v in verdicts] == [False, False, True, True, False]
    finding = verdicts[2].findings[0]
    assert finding.tag == "session_hijack" and finding.severity == "high"
    assert finding.reason == (
        "Session started 9 min ago on AS64600 with Other / Windows / Chrome is now used from "
        "AS64600 with Other / Linux / Firefox"
    )
    assert finding.evidence["network_changed"] is True
    # The replay did not overwrite what the session started as: the owner is still fine.
    assert profiles["n:alice"].data["sess"][SESSION[:16]][3] == "Other|Windows|Chrome"


def test_roaming_or_a_switched_browser_alone_is_not_a_hijack():
    engine = Engine([SessionHijack()])
    profiles: dict[str, UserProfile] = {}
    # The phone leaves the Wi-Fi for the carrier: new network, same browser.
    roaming = engine.run(
        [
            owner(0, device=PHONE, ua="iPhone Safari"),
            obs(
                "london",
                minutes=5,
                session_id=SESSION,
                device=PHONE,
                ua="iPhone Safari",
                ip="31.94.1.20",
                asn=64800,
            ),
        ],
        profiles,
    )
    assert not any(v.findings for v in roaming)
    # "Request desktop site": same address, another browser family: low, never flags.
    switched = engine.run(
        [owner(8, device=PHONE, ua="iPhone Safari"), owner(9, ua="Mozilla/5.0 desktop")], profiles
    )
    assert not switched[1].flagged
    assert switched[1].findings[0].score == 0.4 and switched[1].findings[0].severity == "low"


def test_events_without_a_session_unknown_users_and_idle_sessions_are_not_judged():
    detector = SessionHijack(max_idle_hours=1)
    engine = Engine([detector])
    profiles: dict[str, UserProfile] = {}
    no_session = obs("manchester", minutes=1, device=ATTACKER, ip="81.2.70.77", session_id="")
    assert not any(v.findings for v in engine.run([owner(0), no_session], profiles))
    # Two hours later the session is forgotten: its next use starts it again.
    assert not any(v.findings for v in engine.run([replay(125)], profiles))
    assert not engine.run([replay(126)], {})[0].findings  # no profile yet: first sight


def test_a_profile_keeps_a_bounded_number_of_sessions():
    engine = Engine([SessionHijack(max_sessions=4)])
    profiles: dict[str, UserProfile] = {}
    batch = [
        obs("london", minutes=i, session_id=f"{i:02d}" + "f" * 62, id=f"s{i}") for i in range(10)
    ]
    engine.run(batch, profiles)
    sessions = profiles["n:alice"].data["sess"]
    assert sorted(sessions) == [f"{i:02d}" + "f" * 14 for i in range(6, 10)]


def test_the_hijack_detector_is_built_in_and_validates_its_parameters():
    assert "session_hijack" in {d.name for d in build_all(None)}
    bad = SessionHijack(hijack_score=1.5)
    try:
        bad.validate()
    except ValueError as exc:
        assert "hijack_score" in str(exc)
    else:
        raise AssertionError("an out-of-range score must be refused")
