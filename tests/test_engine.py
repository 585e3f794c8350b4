"""The detection engine on plain Python data: no database, no Django models, no settings.

Teach-if-not-flagged, novelty marking, the suspicious threshold, suppression, score
combination, batched detectors, the declared detector hooks and review feedback, all through
``detectors.engine.Engine``; and ``detectors`` imported and run in a process where Django is not
configured.
"""

from __future__ import annotations

import builtins
import os
import socket
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from detectors.asn_change import AsnChange
from detectors.base import Detector, Finding
from detectors.engine import Engine, Verdict, apply_suppression, combine, decide
from detectors.impossible_travel import ImpossibleTravel
from detectors.population import Population
from detectors.profile import UserProfile
from detectors.registry import build_all
from detectors.risk import FreemanRiskScore
from detectors.rules import parse_rule
from tests.detection_helpers import T0, obs, trained_profile

ROOT = Path(__file__).resolve().parent.parent


class Fixed(Detector):
    """Scores every event it is given with fixed numbers (a stand-in for a real detector)."""

    name = "fixed"
    tag = "fixed"

    def __init__(self, value: float = 0.4, flag: bool = False, severity: str = "low") -> None:
        self.value = value
        self.flag = flag
        self.severity = severity

    def score(self, event, profile, context):
        return [
            Finding(
                detector=self.name,
                tag=self.tag,
                score=self.value,
                severity=self.severity,
                reason="fixed",
                flag=self.flag,
            )
        ]


class Other(Fixed):
    name = "other"
    tag = "other"


class Recorder(Detector):
    """Declares the optional hooks and records when the engine calls them."""

    name = "recorder"
    tag = "recorded"

    def __init__(self) -> None:
        self.updates: list[str] = []
        self.networks: list[tuple] = []

    def score(self, event, profile, context):
        return []

    def update(self, event, profile, context):
        self.updates.append(event.id)
        context.population.add("asn", str(event.asn))

    def population_keys(self, event):
        return [("asn", str(event.asn))]

    def extend_networks(self, hosting_asns, mobile_asns):
        self.networks.append((hosting_asns, mobile_asns))


class Locating(Recorder):
    name = "locating"
    locates = True


class Batch(Detector):
    """A batched detector: one row per event, all rows scored in one call."""

    name = "batch"
    tag = "batch_outlier"
    batched = True

    def __init__(self) -> None:
        self.calls: list[int] = []

    def prepare(self, event, profile, context):
        return event.duration or 0.0

    def score_prepared(self, items):
        self.calls.append(len(items))
        return [
            [Finding(detector=self.name, tag=self.tag, score=0.3, severity="low", reason="slow")]
            if row > 1000
            else []
            for _, row in items
        ]


class Broken(Detector):
    name = "broken"
    tag = "broken"

    def score(self, event, profile, context):
        raise RuntimeError("detector bug")


def rule(text: str):
    return parse_rule(yaml.safe_load(textwrap.dedent(text)), "test.yml")


SUPPRESS_TRAVEL = """
title: Corporate VPN exit
id: corp-vpn
detection:
  sel:
    ip_address|cidr: 62.30.12.0/24
  condition: sel
action:
  suppress: [impossible_travel, asn_change]
  tags: [corporate_vpn]
"""

BRUTE_FORCE = """
title: Brute force
id: brute
detection:
  failed:
    type: AUTH
    status|gte: 400
  condition: failed
threshold:
  count: 3
  group_by: [username]
  timespan: 15m
action:
  flag: true
  tags: [brute_force]
  severity: high
"""


def profiles_of(*profiles: UserProfile) -> dict[str, UserProfile]:
    return {p.key: p for p in profiles}


# --- verdict maths --------------------------------------------------------------------------
def test_combination_and_flag_threshold():
    assert combine([]) == 0.0
    assert combine([0.5, 0.6]) == 0.6
    assert combine([0.5, 0.5], "noisy_or") == pytest.approx(0.75)
    low = [Finding(detector="a", tag="a", score=0.5, severity="low", reason="")]
    assert decide(low, 0.7, "max") == (0.5, False)
    two = low + [Finding(detector="b", tag="b", score=0.5, severity="low", reason="")]
    risk, flagged = decide(two, 0.7, "noisy_or")
    assert risk == pytest.approx(0.75) and flagged
    assert decide([], 0.0, "max") == (0.0, False)  # no finding never flags


def test_suppressed_findings_leave_the_verdict():
    travel = Finding(
        detector="impossible_travel", tag="impossible_travel", score=1, severity="high", reason=""
    )
    vpn = Finding(
        detector="rule:corp",
        tag="",
        score=0,
        severity="low",
        reason="",
        extra_tags=("corporate_vpn",),
        suppresses=("impossible_travel",),
    )
    findings = [travel, vpn]
    apply_suppression(findings)
    assert travel.suppressed and not vpn.suppressed
    verdict = Verdict(findings=findings, risk=0.0)
    assert verdict.tags == {"corporate_vpn"} and verdict.severity == "low"


def test_engine_combines_scores_with_its_parameters():
    batch = [obs("london", id="e1")]
    kept = Engine([Fixed(value=0.5), Other(value=0.5)], risk_combine="max", flag_threshold=0.7)
    (v,) = kept.run(batch, {})
    assert v.risk == 0.5 and not v.flagged and v.tags == {"fixed", "other"}
    noisy = Engine([Fixed(value=0.5), Other(value=0.5)], risk_combine="noisy_or")
    (v,) = noisy.run([obs("london", id="e1")], {})
    assert v.risk == pytest.approx(0.75) and v.flagged
    (v,) = Engine([Fixed(value=0.1, flag=True)]).run([obs("london", id="e1")], {})
    assert v.flagged and v.risk == pytest.approx(0.1)  # a flagging finding flags at any score


# --- teach if not flagged, suspicious, novelty -------------------------------------------
def test_a_flagged_event_does_not_teach_its_network_or_place():
    alice = trained_profile()
    engine = Engine([ImpossibleTravel(), AsnChange()])
    home = obs("london", id="home")
    far = obs("sydney", minutes=30, asn=65120, isp="Far Away Hosting")
    _, v = engine.run([home, far], profiles_of(alice))
    assert v.flagged and {"impossible_travel", "new_asn"} <= v.tags
    assert alice.count("asn", "65120") == 0
    assert alice.location["city"] == "London"
    assert alice.recent("req", far.epoch, 1) == 1  # still counted as a request


def test_an_unflagged_event_teaches_and_a_suspicious_one_keeps_no_position():
    alice = trained_profile()
    calm = Engine([Fixed(value=0.2)], flag_threshold=0.9)
    berlin = obs("berlin", minutes=600, asn=64620)
    calm.run([berlin], profiles_of(alice))
    assert alice.count("asn", "64620") == 1 and alice.location["city"] == "Berlin"

    bob = trained_profile()
    suspicious = Engine([Fixed(value=0.6)], flag_threshold=0.9)
    (v,) = suspicious.run([obs("berlin", minutes=600, asn=64620)], profiles_of(bob))
    assert not v.flagged and v.risk == 0.6
    # Network learned, position not: the risk reached ``suspicious`` (0.5).
    assert bob.count("asn", "64620") == 1 and bob.location["city"] == "London"
    carol = trained_profile()
    lenient = Engine([Fixed(value=0.6)], flag_threshold=0.9, suspicious=0.65)
    lenient.run([obs("berlin", minutes=600, asn=64620)], profiles_of(carol))
    assert carol.location["city"] == "Berlin"


def test_failed_events_teach_nothing_and_unknown_names_get_no_profile():
    alice = trained_profile()
    profiles = profiles_of(alice)
    engine = Engine([AsnChange()])
    attempts = [
        obs("berlin", minutes=1, status=401, asn=64620),
        obs("berlin", minutes=2, status=401, username="victim1", id="v1"),
    ]
    engine.run(attempts, profiles)
    assert set(profiles) == {"n:alice"}
    assert alice.count("asn", "64620") == 0 and alice.recent("fail", attempts[0].epoch, 60) == 1
    # A successful event of a new user creates the profile it teaches.
    engine.run([obs("london", minutes=3, username="newbie", id="n1")], profiles)
    assert profiles["n:newbie"].events == 1


def test_a_successful_login_from_a_new_network_is_marked_novel():
    alice = trained_profile()
    engine = Engine([])
    assert alice.novel_login is None
    engine.run([obs("london", minutes=5, asn=64999)], profiles_of(alice))
    assert alice.novel_login == pytest.approx((T0 + timedelta(minutes=5)).timestamp())
    known = trained_profile()
    engine.run([obs("london", minutes=5)], profiles_of(known))
    assert known.novel_login is None


# --- rules, batches, order ---------------------------------------------------------------
def test_rule_suppression_and_threshold_with_history():
    alice = trained_profile()
    engine = Engine([ImpossibleTravel()], [rule(SUPPRESS_TRAVEL), rule(BRUTE_FORCE)])
    home = obs("london", id="home")
    office = obs("new_york", minutes=60, ip="62.30.12.7", asn=64700)
    _, v = engine.run([home, office], profiles_of(alice))
    travel = next(f for f in v.findings if f.detector == "impossible_travel")
    assert travel.suppressed and not v.flagged and v.tags == {"corporate_vpn"}

    stored = [
        {"id": f"old{i}", "timestamp": T0 + timedelta(minutes=i), "type": "AUTH", "status": 401}
        | {"username": "alice"}
        for i in range(2)
    ]
    third = obs("london", minutes=3, status=401, id="third")
    (v,) = Engine([], [rule(BRUTE_FORCE)]).run([third], {}, history={"brute": stored})
    assert v.flagged and "brute_force" in v.tags and v.severity == "high"
    (v,) = Engine([], [rule(BRUTE_FORCE)]).run([obs("london", minutes=3, status=401)], {})
    assert not v.findings  # the same event without the stored look-back stays below 3


def test_batched_detector_scores_the_whole_batch_in_one_call():
    batch_detector = Batch()
    engine = Engine([batch_detector, Fixed(value=0.2)])
    events = [
        obs("london", minutes=i, id=f"e{i}", duration=5000 if i == 2 else 10) for i in range(4)
    ]
    verdicts = engine.run(events, {})
    assert batch_detector.calls == [4]
    assert [("batch_outlier" in v.tags) for v in verdicts] == [False, False, True, False]


def test_a_batch_out_of_order_is_judged_in_time_order_and_answered_in_input_order():
    alice = trained_profile()
    engine = Engine([ImpossibleTravel()])
    later = obs("sydney", minutes=60, id="later", asn=65120)
    first = obs("london", minutes=1, id="first")
    verdicts = engine.run([later, first], profiles_of(alice))
    assert verdicts[0].flagged and not verdicts[1].findings


def test_one_broken_detector_does_not_silence_the_others(caplog):
    with caplog.at_level("ERROR", logger="tracking.detection"):
        (v,) = Engine([Broken(), Fixed()]).run([obs("london")], {})
    assert v.tags == {"fixed"}
    assert "detector broken failed" in caplog.text


# --- declared hooks ------------------------------------------------------------------------
def test_hooks_are_declared_on_the_base_class_with_harmless_defaults():
    plain = Fixed()
    assert plain.population_keys(obs("london")) == []
    assert plain.extend_networks((1,), (2,)) is None
    assert not (plain.batched or plain.locates or plain.trainable)
    assert plain.state_name() == "fixed"
    assert ImpossibleTravel.locates and not AsnChange.locates
    assert FreemanRiskScore().population_keys(obs("london"))


def test_population_and_update_hooks_are_used_for_teaching_events_only():
    recorder = Recorder()
    engine = Engine([recorder], flag_threshold=0.9)
    events = [obs("london", id="ok"), obs("london", minutes=1, id="failed", status=401)]
    keys = engine.population_keys(events)
    assert "asn:64600" in keys and "asn:*" in keys
    population = Population({k: 0 for k in keys})
    engine.run(events, {}, population)
    assert recorder.updates == ["ok"]
    assert population.changed() == {"asn:64600": 1, "asn:*": 1, "asn:#": 1}


def test_without_a_locating_detector_the_engine_keeps_the_city_position():
    plain_profile = trained_profile()
    Engine([Recorder()]).run([obs("paris", minutes=600)], profiles_of(plain_profile))
    assert plain_profile.location["city"] == "Paris"
    # A locating detector decides about positions itself (this one keeps none).
    located = trained_profile()
    Engine([Locating()]).run([obs("paris", minutes=600)], profiles_of(located))
    assert located.location["city"] == "London"


def test_network_lists_reach_the_detectors_that_declare_the_hook():
    (asn,) = build_all([("detectors.asn_change.AsnChange", {"hosting_asns": [1]})])
    asn.extend_networks((64999,), (64998,))
    assert 64999 in asn.hosting_ and 64998 in asn.mobile_ and 1 in asn.hosting_
    recorder = Recorder()
    recorder.extend_networks((64999,), ())
    assert recorder.networks == [((64999,), ())]


# --- review feedback ----------------------------------------------------------------------
def test_dismissal_teaches_and_confirmation_forgets():
    alice = trained_profile()
    engine = Engine([ImpossibleTravel(), AsnChange()])
    vpn = obs("london", minutes=30, asn=65110, isp="Exit VPN Hosting", id="vpn1")
    (v,) = engine.run([vpn], profiles_of(alice))
    assert "new_asn" in v.tags and alice.count("asn", "65110") == 0
    engine.dismiss(vpn, alice, Population())
    assert alice.count("asn", "65110") == 1 and alice.data["labels"]["dismissed"] == ["vpn1"]
    again_event = obs("london", minutes=90, asn=65110, isp="Exit VPN Hosting")
    (again,) = engine.run([again_event], profiles_of(alice))
    assert "new_asn" not in again.tags

    bob = trained_profile()
    odd = obs("berlin", minutes=600, asn=64620, id="odd")
    Engine([Fixed(value=0.1)]).run([odd], profiles_of(bob))
    assert bob.count("asn", "64620") == 1
    engine.confirm(odd, bob)
    assert bob.count("asn", "64620") == 0 and bob.data["labels"]["confirmed"] == ["odd"]


# --- no clock, no I/O ------------------------------------------------------------------------
def _scenario(shift: timedelta = timedelta(0)):
    events = [obs("london", minutes=i * 60, id=f"h{i}") for i in range(8)]
    events += [
        obs("sydney", minutes=600, asn=65120, isp="Far Away Hosting", id="far"),
        obs("london", minutes=601, status=401, id="fail"),
    ]
    for e in events:
        e.timestamp += shift
        e.epoch = e.timestamp.timestamp()
    return events


def _summary(verdicts):
    return [(v.flagged, round(v.risk, 6), sorted(v.tags), v.severity) for v in verdicts]


def test_verdicts_depend_on_event_time_only_and_scoring_does_no_io(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the engine must not do I/O")

    def run(shift):
        engine = Engine(
            [ImpossibleTravel(), AsnChange(min_events=2, min_days=0), FreemanRiskScore()],
            [rule(BRUTE_FORCE)],
        )
        return _summary(engine.run(_scenario(shift), {}))

    with monkeypatch.context() as m:
        m.setattr(builtins, "open", refuse)
        m.setattr(socket, "socket", refuse)
        now = run(timedelta(0))
        past = run(-timedelta(days=365 * 20))
    assert now == past and any(flagged for flagged, *_ in now)


# --- Django-free -------------------------------------------------------------------------
STANDALONE = """
import sys
from datetime import datetime, timedelta, timezone

import detectors
from detectors import Engine, Observation, build_all, load_rules

engine = Engine(build_all(None), load_rules([sys.argv[1]]))
t0 = datetime(2026, 3, 2, 9, tzinfo=timezone.utc)
events = [
    Observation(timestamp=t0 + timedelta(minutes=i), type="AUTH", id=f"e{i}", user_key="n:x",
                username="x", status=401, ip_address="203.0.113.9")
    for i in range(8)
]
verdicts = engine.run(events, {})
assert any("brute_force" in v.tags for v in verdicts), verdicts
leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("django", "tracking", "rest_framework"))
assert not leaked, leaked
print("ok", sum(v.flagged for v in verdicts))
"""


def test_detectors_import_and_run_without_django():
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-c", STANDALONE, str(ROOT / "rules")],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] == "ok" and int(done.stdout.split()[1]) >= 1


def test_the_detector_guide_examples_run():
    """docs/detectors.md: its code blocks, run in order, define, register and try a detector."""
    text = (ROOT / "docs" / "detectors.md").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```python\n")[1:]]
    assert len(blocks) == 3
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "docs/detectors.md", "exec"), namespace)
    assert namespace["verdict"].tags == {"payment_new_country"}
    detector = namespace["NewCountryOnPayment"](weight=2)
    with pytest.raises(ValueError, match="weight"):
        detector.validate()


# Optional dependencies (the ``ml`` extra) are the only imports allowed inside functions.
OPTIONAL = ("numpy", "sklearn", "skops")


@pytest.mark.parametrize("package", ["detectors", "tracking/detection"])
def test_no_imports_inside_functions_except_optional_dependencies(package):
    import ast

    late = []
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text())
        for func in ast.walk(tree):
            if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(func):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    names = [node.module or ""]
                else:
                    continue
                late += [
                    f"{path.relative_to(ROOT)}:{node.lineno} {n}"
                    for n in names
                    if n.split(".")[0] not in OPTIONAL
                ]
    assert late == []
