"""Distributed attacks on plain data: site-wide failed-login baselines learned from history,
a botnet campaign (one or two tries per address, many names unknown) flagged, an ordinary
day of typos not."""

from __future__ import annotations

from datetime import timedelta

import pytest

from detectors.campaign import FailureCampaign
from detectors.engine import Engine
from detectors.population import Population
from detectors.profile import UserProfile
from detectors.traits import CampaignTraits, network_of
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


# --- shared traits and rotation inside one network (detectors.traits) -----------------------

ATTACKER_UA = "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:109.0) Gecko/20100101 Firefox/115.0"


def stranger_failure(hours: float, username: str, ip: str, *, ua: str = ATTACKER_UA, **kw):
    """A failed login from an address and browser the account never used."""
    return obs(
        "paris",
        at=T0 + timedelta(hours=hours),
        status=401,
        username=username,
        ip=ip,
        asn=kw.pop("asn", 64610),
        isp=kw.pop("isp", "Gallic Fibre"),
        ua=ua,
        id=f"x-{username}-{hours}-{ip}",
        **kw,
    )


def traits_engine(**params):
    return Engine([CampaignTraits(**params).fit()])


def one_by_one(engine, events, profiles, population):
    """Each event in its own batch, as live requests arrive: verdicts made at ingest."""
    return [engine.run([e], profiles, population)[0] for e in events]


def quiet_site(engine, profiles, population, days=3):
    """Users signing in from home (Thames Broadband), an owner's typo now and then."""
    site_history(engine, profiles, population, days=days)


def test_brute_force_on_one_account_from_rotating_addresses_of_one_24_is_network_rotation():
    engine = traits_engine()
    profiles: dict[str, UserProfile] = {}
    population = Population()
    quiet_site(engine, profiles, population)
    start = 3 * 24 + 1
    # One guess every four minutes (under the per-account burst rule), another address each time.
    guesses = [stranger_failure(start + i / 15, "user3", f"90.80.1.{20 + i}") for i in range(12)]
    verdicts = one_by_one(engine, guesses, profiles, population)
    flagged = [v.flagged for v in verdicts]
    # Flagged from the fifth (``min_network``) on, not before.
    assert flagged == [False] * 4 + [True] * 8
    finding = verdicts[4].findings[0]
    assert finding.tag == "network_rotation" and finding.evidence["trait"] == "net"
    assert "5 failed logins in 60 min from 5 addresses rotating inside 90.80.1.0/24" in (
        finding.reason
    )


def test_spraying_across_the_blocks_of_one_provider_is_counted_per_as():
    engine = traits_engine()
    profiles: dict[str, UserProfile] = {}
    population = Population()
    quiet_site(engine, profiles, population)
    start = 3 * 24 + 1
    # Four /24s of one AS, each with its own browser string: no /24 and no browser reaches
    # its floor, the AS does; a new name every time is a spray, which crosses at five
    # (``min_shaped``) rather than eight (``min_asn``).
    uas = [f"Mozilla/5.0 (Windows NT 10.0) Chrome/12{k}.0" for k in range(4)]
    spray = [
        stranger_failure(start + i / 20, f"nobody{i}", f"90.80.{1 + i % 4}.{50 + i}", ua=uas[i % 4])
        for i in range(12)
    ]
    verdicts = one_by_one(engine, spray, profiles, population)
    assert [v.flagged for v in verdicts] == [False] * 4 + [True] * 8
    finding = verdicts[-1].findings[0]
    assert finding.evidence["trait"] == "asn" and "rotating inside AS64610" in finding.reason
    assert finding.evidence["traits"][0]["unknown_names"] == 12
    assert "12 accounts, 1.0 tries each: a password spray" in finding.reason


def test_a_botnet_sharing_one_user_agent_is_grouped_across_networks():
    engine = traits_engine()
    profiles: dict[str, UserProfile] = {}
    population = Population()
    quiet_site(engine, profiles, population)
    start = 3 * 24 + 1
    asns = [64600, 64610, 64620, 64630, 64640, 64650, 64660, 64670, 64680, 64690]
    bots = [
        stranger_failure(start + i / 30, f"user{i % 20}", f"{10 + i}.1.2.3", asn=asns[i])
        for i in range(10)
    ]
    verdicts = one_by_one(engine, bots, profiles, population)
    # Ten names, one try each: a spray, over from the fifth attempt (``min_shaped``).
    assert [v.flagged for v in verdicts] == [False] * 4 + [True] * 6
    finding = verdicts[-1].findings[0]
    assert finding.tag == "login_campaign" and finding.evidence["trait"] == "ua"
    assert "from 10 addresses sharing the user agent" in finding.reason


def test_an_office_nat_where_many_users_mistype_is_not_counted():
    """The owners failing from their own network and browser are not strangers: however many
    users of one office /24 mistype, nothing is counted for it."""
    engine = traits_engine()
    profiles: dict[str, UserProfile] = {}
    population = Population()
    quiet_site(engine, profiles, population)
    start = 3 * 24 + 1
    # ``site_history`` users sign in from 81.2.69.10 (Thames Broadband) with one browser.
    typos = [
        failure(start + i / 30, f"user{i % 20}", ip=f"81.2.69.{10 + i % 3}") for i in range(20)
    ]
    verdicts = engine.run(typos, profiles, population)
    assert not any(v.findings for v in verdicts)
    assert population.count("trn", "net:81.2.69.0/24") == 0


def test_a_busy_providers_as_learns_a_higher_bar_from_its_own_history():
    """An AS where travellers and new phones fail every hour sets its bar from that history;
    a quiet one keeps the floor."""

    def run(busy: bool) -> list[bool]:
        engine = traits_engine()
        profiles: dict[str, UserProfile] = {}
        population = Population()
        quiet_site(engine, profiles, population)
        if busy:
            # Three days of 4 stranger failures an hour from AS64610, from rotating addresses.
            for h in range(3 * 24):
                engine.run(
                    [
                        stranger_failure(h + k / 5, f"user{k}", f"90.80.2.{(h * 4 + k) % 250}")
                        for k in range(4)
                    ],
                    profiles,
                    population,
                )
        start = 3 * 24 + 1
        uas = [f"Mozilla/5.0 (Windows NT 10.0) Chrome/12{k}.0" for k in range(4)]
        burst = [
            stranger_failure(
                start + i / 12, f"nobody{i}", f"90.80.{1 + i % 4}.{90 + i}", ua=uas[i % 4]
            )
            for i in range(10)
        ]
        return [v.flagged for v in one_by_one(engine, burst, profiles, population)]

    assert run(busy=False)[-1]
    assert not any(run(busy=True))


def test_traits_are_not_judged_before_the_minimum_history():
    engine = traits_engine()
    population = Population()
    guesses = [stranger_failure(i / 15, "user3", f"90.80.1.{20 + i}") for i in range(12)]
    assert not any(v.findings for v in engine.run(guesses, {}, population))
    assert population.count("trn", "net:90.80.1.0/24") == 12


def test_network_of_an_address():
    assert network_of("90.80.1.77") == "90.80.1.0/24"
    assert network_of("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"
    assert network_of("2001:db8::1") == "2001:db8:0:0::/64"
    assert network_of(None) == ""


def test_strangers_let_the_site_wide_campaign_be_recognised_within_a_few_attempts():
    """Failures from outside the accounts' own networks and browsers are rare on a normal
    day: a botnet stands out after a handful of them, long before the whole site's failures."""
    engine = Engine([FailureCampaign().fit()])
    profiles: dict[str, UserProfile] = {}
    population = Population()
    site_history(engine, profiles, population)
    start = 5 * 24 + 1
    bots = [
        stranger_failure(start + i / 20, f"user{i % 20}", f"{20 + i}.7.8.9", asn=64000 + i)
        for i in range(10)
    ]
    verdicts = one_by_one(engine, bots, profiles, population)
    assert [v.flagged for v in verdicts] == [False] * 4 + [True] * 6
    assert verdicts[4].findings[0].evidence["metric"] in ("camp_stranger", "camp_cc")


def test_a_campaign_recognised_later_in_the_batch_names_its_first_attempts_too():
    """Judged as one batch (an import, a busy writer), the attempts before the campaign stood
    out get its finding as well; an owner's typo in the same hour does not."""
    engine = Engine([FailureCampaign().fit(), CampaignTraits().fit()])
    profiles: dict[str, UserProfile] = {}
    population = Population()
    site_history(engine, profiles, population)
    start = 5 * 24 + 1
    owner = failure(start + 0.01, "user3")
    guesses = [
        stranger_failure(start + 0.02 + i / 15, "user4", f"90.80.1.{20 + i}") for i in range(8)
    ]
    verdicts = engine.run([owner, *guesses], profiles, population)
    assert not verdicts[0].findings
    assert all(v.flagged for v in verdicts[1:])
    first = verdicts[1].findings[0]
    assert first.reason.startswith("Part of a campaign recognised")
    assert "recognised_at" in first.evidence
    # Without backfilling, the first attempts keep their ingest-time verdict.
    engine = Engine([FailureCampaign(backfill=False).fit(), CampaignTraits(backfill=False).fit()])
    profiles, population = {}, Population()
    site_history(engine, profiles, population)
    verdicts = engine.run([owner, *guesses], profiles, population)
    assert [v.flagged for v in verdicts] == [False] * 5 + [True] * 4


# --- through ingest -------------------------------------------------------------------------


@pytest.mark.django_db
def test_rotation_inside_one_24_through_ingest_is_tagged_and_explained():
    from django.contrib.auth import get_user_model

    from tracking.events import Event
    from tracking.models import Activity, Finding
    from tracking.pipeline.ingest import ingest
    from tracking.simulator.world import NETWORKS, host

    home = next(n for n in NETWORKS if n.city == "london" and n.kind == "residential")
    paris = next(n for n in NETWORKS if n.city == "paris" and n.kind == "residential")
    desktop = (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/124.0 Safari/537.36"
    )

    def login(ts, network, index, status=200, ua=desktop):
        return Event(
            type="AUTH",
            timestamp=ts,
            username="alice",
            ip_address=host(network, index),
            user_agent=ua,
            endpoint="/accounts/login/",
            method="POST",
            status=status,
            duration=100.0,
        )

    get_user_model().objects.create(username="alice")
    # Three days of history, the owner's own typo on the first.
    history = [login(T0 + timedelta(hours=6 * h), home, 20) for h in range(12)]
    history.insert(1, login(T0 + timedelta(hours=1), home, 20, status=401))
    ingest(history, source="import")
    start = T0 + timedelta(days=3)
    guesses = [
        login(start + timedelta(minutes=4 * i), paris, 30 + i, status=401, ua=ATTACKER_UA)
        for i in range(7)
    ]
    for guess in guesses:  # one request at a time, as they arrive
        ingest([guess], source="api")
    rows = [Activity.objects.get(id=g.id) for g in guesses]
    assert [("network_rotation" in r.tags) and r.flagged for r in rows] == [False] * 4 + [True] * 3
    finding = Finding.objects.get(activity=rows[4], detector="campaign_traits")
    assert finding.reason.startswith(
        "Network rotation: 5 failed logins in 60 min from 5 addresses rotating inside 90.80.1.0/24"
    )
    assert finding.evidence["trait"] == "net"


def test_office_typos_are_not_stuffing_or_spraying_but_strangers_from_one_address_are():
    """The shipped pack on an office NAT: the owners mistyping on their own network and
    browser (trk-owner-typo) silence the stuffing and spraying rules; the same shape from
    a stranger's address is flagged."""
    from detectors.rules import load_rules
    from tracking.detection.config import builtin_rule_dir

    engine = Engine([], load_rules([builtin_rule_dir()]))
    profiles: dict[str, UserProfile] = {}
    population = Population()
    quiet_site(engine, profiles, population)
    start = 3 * 24 + 1
    # Eight users behind the office address mistype within ten minutes, then all day.
    typos = [failure(start + i / 60, f"user{i}") for i in range(8)]
    typos += [failure(start + 1 + i / 2, f"user{8 + i}") for i in range(8)]
    verdicts = engine.run(typos, profiles, population)
    assert not any(v.flagged for v in verdicts)
    assert all("owner_typo" in v.tags for v in verdicts)
    assert not any({"credential_stuffing", "password_spraying"} & set(v.tags) for v in verdicts)
    # A stranger's address trying the same accounts is credential stuffing.
    attack = [stranger_failure(start + 6 + i / 60, f"user{i}", "45.150.1.7") for i in range(5)]
    verdicts = engine.run(attack, profiles, population)
    assert [v.flagged for v in verdicts] == [False, False, True, True, True]
    assert "credential_stuffing" in verdicts[-1].tags and "owner_typo" not in verdicts[-1].tags


# --- spray shape and machine cadence inside a trait group ------------------------------------

# Minutes between attempts that no scheduler keeps (people and flaky scripts).
IRREGULAR = [0, 4, 5, 13, 14, 22, 29, 30, 41, 44, 52, 58]


def shared_ua_bots(minutes, accounts, start=3 * 24 + 1, ip=lambda i: f"{10 + i}.1.2.3"):
    """Failures sharing one user agent, each from another address in another AS."""
    return [
        stranger_failure(start + m / 60, accounts(i), ip(i), asn=64000 + i)
        for i, m in enumerate(minutes)
    ]


def judged(events, **params):
    engine = traits_engine(**params)
    profiles: dict[str, UserProfile] = {}
    population = Population()
    quiet_site(engine, profiles, population)
    return one_by_one(engine, events, profiles, population), population


def test_a_password_spray_crosses_sooner_and_says_so():
    """Ten names, one try each, at irregular moments: a spray crosses at five; the same
    attempts on two accounts keep the user-agent floor (eight); one account is named brute
    force."""
    spray, _ = judged(shared_ua_bots(IRREGULAR[:10], lambda i: f"user{i}"))
    assert [v.flagged for v in spray] == [False] * 4 + [True] * 6
    finding = spray[4].findings[0]
    assert finding.evidence["trait"] == "ua" and finding.score == 0.9
    assert "5 failed logins in 60 min from 5 addresses sharing the user agent" in finding.reason
    assert "5 accounts, 1.0 tries each: a password spray" in finding.reason
    assert finding.evidence["traits"][0]["shape"] == "spray"
    assert "cadence" not in finding.reason

    two, _ = judged(shared_ua_bots(IRREGULAR[:10], lambda i: f"user{i % 2}"))
    assert [v.flagged for v in two] == [False] * 7 + [True] * 3
    assert two[7].findings[0].score == 0.8 and "spray" not in two[7].findings[0].reason

    one, _ = judged(shared_ua_bots(IRREGULAR[:10], lambda i: "user3"))
    assert [v.flagged for v in one] == [False] * 7 + [True] * 3
    assert "; 1 account, 8 tries: brute force" in one[7].findings[0].reason
    assert one[7].findings[0].evidence["traits"][0]["shape"] == "brute_force"


def test_a_name_retried_within_the_window_is_one_account():
    """Seven tries on each of two names are not fourteen accounts; the counters hold a hash
    of the account, never its name."""
    events = shared_ua_bots(IRREGULAR + [59, 59.5], lambda i: f"victim{i % 2}")
    verdicts, population = judged(events)
    last = verdicts[-1].findings[0].evidence["traits"]
    assert {c["accounts"] for c in last} == {2} and {c["shape"] for c in last} == {""}
    assert not any("victim" in key for key in population.counts)


def test_a_slow_campaign_at_a_machine_cadence_is_grouped():
    """One try every twelve minutes (± a few seconds) from rotating addresses on two accounts
    stays under every floor (five an hour); its steady beat gives it away at the seventh
    attempt (six gaps). The same attempts at irregular moments are never flagged."""
    jitter = [0, 0.05, -0.04, 0.03, 0, -0.05, 0.02, 0.04, -0.02, 0.01]
    steady = [12 * i + j for i, j in enumerate(jitter)]
    verdicts, _ = judged(shared_ua_bots(steady, lambda i: f"user{i % 2}"))
    assert [v.flagged for v in verdicts] == [False] * 6 + [True] * 4
    finding = verdicts[6].findings[0]
    (crossing,) = finding.evidence["traits"]
    assert crossing["failures"] == 5 and crossing["cadence"]["gaps"] == 6
    assert "at a machine cadence, one every 720 s ± 4 s" in finding.reason
    assert finding.score == 0.9

    irregular = [0, 7, 21, 26, 40, 43, 57, 68, 76, 90]  # gaps of 3 to 14 minutes
    verdicts, _ = judged(shared_ua_bots(irregular, lambda i: f"user{i % 2}"))
    assert not any(v.flagged for v in verdicts)
    # A pause longer than ``cadence_gap_seconds`` starts the beat again: six gaps after it.
    paused = steady[:4] + [m + 30 for m in steady[4:]] + [12 * 10 + 30]
    verdicts, _ = judged(shared_ua_bots(paused, lambda i: f"user{i % 2}"))
    assert [v.flagged for v in verdicts] == [False] * 10 + [True]


def test_a_tight_burst_across_addresses_crosses_at_its_seventh_attempt():
    burst = [i / 150 for i in range(8)]  # 0.4 s apart
    verdicts, _ = judged(shared_ua_bots(burst, lambda i: f"user{i % 2}"))
    assert [v.flagged for v in verdicts] == [False] * 6 + [True] * 2
    assert "in a tight burst, 400 ms apart on average" in verdicts[6].findings[0].reason


def test_random_arrivals_rarely_look_like_a_cadence():
    """Strangers failing at random moments (exponential gaps) pass for a steady beat in well
    under 1 % of the checks: the cadence tells a scheduler from people."""
    import random

    from detectors.traits import cadence_step

    detector = CampaignTraits()
    rng = random.Random(18)
    state, t, regular = (0, 0, 0, 0), 0.0, 0
    for _ in range(5000):
        t += rng.expovariate(1 / 240)
        state = cadence_step(state, t, 900_000) or state
        regular += detector.regular(*state[1:])
    assert regular / 5000 < 0.01


def test_benign_look_alikes_stay_unflagged():
    """A morning wave of sign-ins with the owners' typos, and one traveller retrying a
    forgotten password every thirty seconds from a hotel: neither is a campaign, though the
    traveller is a stranger with a steady beat on one account (one address)."""
    engine = traits_engine()
    profiles: dict[str, UserProfile] = {}
    population = Population()
    quiet_site(engine, profiles, population)
    start = 3 * 24 + 0.5
    wave = []
    for i in range(40):
        wave.append(success(start + i / 120, f"user{i % 20}"))
        if i % 4 == 0:
            wave.append(failure(start + i / 120 + 0.001, f"user{i % 20}"))
    hotel = [
        stranger_failure(start + 1 + i / 120, "user7", "203.0.113.9", asn=64999) for i in range(10)
    ]
    verdicts = engine.run(sorted(wave + hotel, key=lambda o: o.epoch), profiles, population)
    assert not any(v.findings for v in verdicts)
    # The traveller's retries did keep a beat (nine gaps of 30 s) on one account.
    hotel_net = "net:203.0.113.0/24"
    assert population.count("trr", hotel_net) == 9 and population.count("trm", hotel_net) == 30000
    assert CampaignTraits().regular(9, 30000, population.count("trv", hotel_net))
