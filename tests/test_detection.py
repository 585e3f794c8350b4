"""The detection pipeline in the database: detect_batch, ingest (live, async, import), feedback
from review, configuration (settings, rule folders, suppression) and its system checks."""

from __future__ import annotations

import textwrap
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

import pytest
from django.contrib.auth import get_user_model
from django.core import checks
from django.test import override_settings

from tracking.events import Event
from tracking.models import Activity, Counter, Finding, Profile
from tracking.simulator.world import NETWORKS, host

UTC = dt_timezone.utc

T0 = datetime(2026, 2, 2, 8, 0, tzinfo=UTC)
DESKTOP_UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
ATTACKER_UA = "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:109.0) Gecko/20100101 Firefox/115.0"


def net(city: str, kind: str = "residential"):
    return next(n for n in NETWORKS if n.city == city and n.kind == kind)


def event(
    ts,
    *,
    city="london",
    kind="residential",
    username="alice",
    status=200,
    type="AUTH",
    ua=DESKTOP_UA,
    ip=None,
    **kw,
):
    return Event(
        type=type,
        timestamp=ts,
        username=username,
        ip_address=ip or host(net(city, kind), 20),
        user_agent=ua,
        endpoint=kw.pop("endpoint", "/accounts/login/"),
        method=kw.pop("method", "POST"),
        status=status,
        duration=120.0,
        **kw,
    )


def history(username="alice", days=12, per_day=2):
    """A settled user: London broadband, the same desktop, twice a day."""
    return [
        event(T0 + timedelta(days=d, hours=h * 5), username=username)
        for d in range(days)
        for h in range(per_day)
    ]


def scenario():
    """History, then a login from Lagos minutes after a London one, then a stuffing burst."""
    last = T0 + timedelta(days=12)
    events = history()
    events.append(event(last, username="alice"))
    # Lagos broadband: a hosting exit's place would not be the user's (no impossible travel).
    events.append(event(last + timedelta(minutes=20), city="lagos", ua=ATTACKER_UA))
    events.append(
        event(
            last + timedelta(minutes=25),
            type="PAYMENT",
            endpoint="/payments/",
            city="lagos",
            ua=ATTACKER_UA,
        )
    )
    stuffing_ip = host(net("amsterdam", "hosting"), 99)
    for i in range(6):
        events.append(
            event(
                last + timedelta(hours=2, seconds=5 * i),
                username=f"victim{i}",
                status=401,
                ip=stuffing_ip,
                ua="python-requests/2.31",
            )
        )
    return events


def verdicts(events):
    by_id = {str(a.id): a for a in Activity.objects.all()}
    return [(by_id[e.id].flagged, tuple(sorted(by_id[e.id].tags))) for e in events]


def ingest(events, *, detect=True):
    from tracking.pipeline.ingest import ingest as run

    return run(events, source="import", detect=detect)


@pytest.mark.django_db
def test_detect_batch_on_unsaved_activities_sets_verdicts_and_returns_findings():
    from tracking.detection.runner import detect_batch
    from tracking.pipeline.rows import build_activity

    ingest(history())
    acts = [build_activity(e) for e in scenario()[-9:]]
    findings = detect_batch(acts)
    login = acts[0]
    assert not login.flagged and login.tags == []
    far = acts[1]
    assert far.flagged and "impossible_travel" in far.tags and far.review_status == "open"
    assert far.severity in ("high", "critical") and far.risk_score >= 0.7
    rows = [f for f in findings if f.activity is far]
    it = next(f for f in rows if f.detector == "impossible_travel")
    assert it.pk is None and it.timestamp == far.timestamp and it.flag
    assert it.reason.startswith("London → Lagos") and "km/h" in it.reason
    assert it.evidence["to"]["city"] == "Lagos"
    assert all(0 <= f.score <= 1 for f in findings)
    # nothing was written except profiles and counters
    assert not Activity.objects.filter(id__in=[a.id for a in acts]).exists()


@pytest.mark.django_db
def test_ingest_stores_findings_and_profiles_with_a_bounded_number_of_queries(
    django_assert_max_num_queries,
):
    ingest(history())
    events = scenario()[-9:]
    from tracking.detection.config import pipeline
    from tracking.detection.runner import detect_batch
    from tracking.pipeline.rows import build_activity

    pipeline()  # configuration is loaded once, outside the measured batch
    from django.db import transaction

    acts = [build_activity(e) for e in events]
    with pytest.raises(RuntimeError), transaction.atomic():  # measure, then roll back
        with django_assert_max_num_queries(8):
            detect_batch(acts)
        raise RuntimeError

    ingest(events)
    far = Activity.objects.get(id=events[1].id)
    assert (
        far.flagged and Finding.objects.filter(activity=far, detector="impossible_travel").exists()
    )
    assert Finding.objects.filter(detector="rule:trk-credential-stuffing").count() == 4
    assert Finding.objects.filter(
        detector="rule:trk-change-after-new-login", activity_id=events[2].id
    ).exists()
    profile = Profile.objects.get(key="n:alice")
    assert profile.events == 25 and "64600" in profile.data["k"]["asn"]
    # the attacker's network was not learned (flagged events do not teach)
    assert "65120" not in profile.data["k"]["asn"]
    assert profile.last_seen >= far.timestamp
    # stuffing attempts on unknown names create no profiles
    assert not Profile.objects.filter(key__startswith="n:victim").exists()
    assert Counter.objects.filter(namespace="risk", key="asn:64600").get().count >= 24


@pytest.mark.django_db(transaction=True)
def test_live_async_and_imported_events_get_the_same_verdicts():
    from tracking.capture.tracker import ActivityTracker
    from tracking.pipeline import writer

    def fresh():
        import copy

        return [copy.deepcopy(e) for e in scenario()]

    def clear():
        for model in (Finding, Activity, Profile, Counter):
            model.objects.all().delete()

    tracker = ActivityTracker()
    events = fresh()
    tracker.record_many(events, batch_size=500)  # import: one batch
    imported = verdicts(events)
    clear()
    for e in events:  # live, synchronous: committed one by one, AUTH judged at once,
        tracker.record(e, async_log=False)  # the rest judged by the writer in batches
    assert writer.flush(20)
    live = verdicts(events)
    clear()
    for e in events:  # live, async: the background writer batches them
        tracker.record(e, async_log=True)
    assert writer.flush(20)
    background = verdicts(events)
    assert imported == live, "live"
    assert live == background, "background"
    flagged = [v for v in imported if v[0]]
    assert len(flagged) >= 6  # takeover login + payment + 4 stuffing attempts


@pytest.mark.django_db
def test_verdicts_depend_on_event_time_not_the_wall_clock():
    events = scenario()
    ingest(events)
    now_verdicts = verdicts(events)
    Activity.objects.all().delete()
    Finding.objects.all().delete()
    Profile.objects.all().delete()
    Counter.objects.all().delete()
    shift = timedelta(days=365 * 20)
    old = scenario()
    for e in old:
        e.timestamp -= shift
    ingest(old)
    assert verdicts(old) == now_verdicts


@pytest.mark.django_db
def test_dismissal_teaches_the_profile_and_stops_repeat_findings(staff_user):
    from tracking.detection.review import review

    ingest(history())
    vpn = dict(city="london", kind="vpn", ua=ATTACKER_UA)
    first = event(T0 + timedelta(days=13), **vpn)
    ingest([first])
    a = Activity.objects.get(id=first.id)
    assert a.flagged and "new_asn" in a.tags
    again = event(T0 + timedelta(days=13, hours=1), **vpn)
    ingest([again])
    assert Activity.objects.get(id=again.id).flagged  # still unknown: not taught by a flag

    review(a, by=staff_user, review_status="dismissed")
    profile = Profile.objects.get(key="n:alice")
    assert "65110" in profile.data["k"]["asn"] and first.id in profile.data["labels"]["dismissed"]
    third = event(T0 + timedelta(days=13, hours=2), **vpn)
    ingest([third])
    b = Activity.objects.get(id=third.id)
    assert not b.flagged and not Finding.objects.filter(activity=b, detector="asn_change").exists()
    # The VPN is now the user's own exit: still visible, no longer alarming.
    anon = Finding.objects.get(activity=b, detector="anonymous_network")
    assert anon.score < 0.7 and "usual exit" in anon.reason


@pytest.mark.django_db
def test_confirmation_is_kept_as_a_label_and_forgets_what_the_event_taught(staff_user):
    from tracking.detection.review import review

    ingest(history())
    odd = event(T0 + timedelta(days=13), city="berlin", kind="residential")  # new ASN, unflagged
    ingest([odd])
    act = Activity.objects.get(id=odd.id)
    assert "64620" in Profile.objects.get(key="n:alice").data["k"]["asn"]
    review(act, by=staff_user, review_status="confirmed")
    data = Profile.objects.get(key="n:alice").data
    assert odd.id in data["labels"]["confirmed"]
    assert "64620" not in data["k"]["asn"]


RULE = """
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


@pytest.mark.django_db
def test_project_rule_folder_and_suppression(tmp_path):
    (tmp_path / "corp.yml").write_text(textwrap.dedent(RULE))
    ingest(history() + [event(T0 + timedelta(days=12))])
    office_ny = event(T0 + timedelta(days=12, minutes=1), city="new_york", kind="corporate")
    with override_settings(TRACKING_RULE_DIRS=[str(tmp_path)]):
        ingest([office_ny])
    a = Activity.objects.get(id=office_ny.id)
    assert not a.flagged and "corporate_vpn" in a.tags and "impossible_travel" not in a.tags
    kept = Finding.objects.get(activity=a, detector="impossible_travel")
    assert kept.suppressed and kept.flag
    assert Finding.objects.get(activity=a, detector="asn_change").suppressed
    assert not Finding.objects.get(activity=a, detector="rule:corp-vpn").suppressed


@pytest.mark.django_db
def test_builtin_rules_can_be_switched_off():
    from tracking.detection.config import pipeline

    with override_settings(TRACKING_BUILTIN_RULES=False):
        assert pipeline().rules == []
    assert any(r.id == "trk-brute-force" for r in pipeline().rules)


@pytest.mark.django_db
def test_configured_detectors_and_noisy_or():
    from detectors.engine import combine
    from tracking.detection.config import pipeline

    with override_settings(
        TRACKING_DETECTORS=[
            ("detectors.impossible_travel.ImpossibleTravel", {"max_speed_kmh": 700})
        ],
        TRACKING_HOSTING_ASNS=[64999],
    ):
        (det,) = pipeline().detectors
        assert det.max_speed_kmh == 700
    with override_settings(
        TRACKING_DETECTORS=[{"class": "detectors.asn_change.AsnChange", "params": {}}],
        TRACKING_HOSTING_ASNS=[64999],
    ):
        (det,) = pipeline().detectors
        assert 64999 in det.hosting_asns
    assert combine([0.5, 0.5], "noisy_or") == pytest.approx(0.75)
    assert combine([0.5, 0.6], "max") == 0.6


def run_checks():
    from tracking.checks import check_detection

    return check_detection()


@pytest.mark.parametrize(
    "setting, needle",
    [
        ([("detectors.nowhere.Missing", {})], "cannot import module 'detectors.nowhere'"),
        ([("detectors.impossible_travel.Nope", {})], "has no attribute 'Nope'"),
        ([("tracking.models.Activity", {})], "is not a detectors.base.Detector subclass"),
        (
            [("detectors.impossible_travel.ImpossibleTravel", {"speed": 1})],
            "unknown parameter(s) speed",
        ),
        (
            [("detectors.impossible_travel.ImpossibleTravel", {"max_speed_kmh": -5})],
            "max_speed_kmh",
        ),
        ([("detectors.asn_change.AsnChange", "not a dict")], "parameters must be a dict"),
        ("detectors.asn_change.AsnChange", "must be a list"),
    ],
)
def test_system_check_names_the_bad_detector_entry(setting, needle):
    with override_settings(TRACKING_DETECTORS=setting):
        errors = [e for e in run_checks() if e.id == "tracking.E050"]
    assert len(errors) == 1 and isinstance(errors[0], checks.Error)
    assert needle in errors[0].msg
    if isinstance(setting, list):
        assert "entry 0" in errors[0].msg


def test_system_check_reports_an_invalid_rule_with_file_and_key(tmp_path, settings):
    bad = tmp_path / "bad.yml"
    bad.write_text("title: t\nid: x\ndetection: {sel: {type|regex: x}, condition: sel}\n")
    settings.TRACKING_RULE_DIRS = [str(tmp_path)]
    (err,) = [e for e in run_checks() if e.id == "tracking.E051"]
    assert str(bad) in err.msg and "detection.sel.type|regex" in err.msg


def test_system_checks_for_numbers_and_clean_default(settings):
    assert run_checks() == []
    settings.TRACKING_FLAG_THRESHOLD = 2
    settings.TRACKING_RISK_COMBINE = "mean"
    settings.TRACKING_HOSTING_ASNS = ["AS1"]
    ids = {e.id for e in run_checks()}
    assert {"tracking.E053", "tracking.E054", "tracking.E055"} <= ids


def test_system_check_warns_about_suppressing_an_unconfigured_detector(tmp_path, settings):
    (tmp_path / "r.yml").write_text(textwrap.dedent(RULE).replace("asn_change", "made_up"))
    settings.TRACKING_RULE_DIRS = [str(tmp_path)]
    (w,) = [e for e in run_checks() if e.id == "tracking.W050"]
    assert "made_up" in w.msg and isinstance(w, checks.Warning)


@pytest.mark.django_db
def test_input_order_does_not_change_verdicts_and_anonymous_events_have_no_profile():
    from tracking.detection.runner import detect_batch
    from tracking.pipeline.rows import build_activity

    ingest(history())
    events = scenario()[-9:]
    anonymous = event(T0 + timedelta(days=12, hours=3), username="", type="OTHER", endpoint="/")
    events.append(anonymous)
    from django.db import transaction

    with pytest.raises(RuntimeError), transaction.atomic():
        acts = [build_activity(e) for e in events]
        detect_batch(acts)
        in_order = [(a.flagged, sorted(a.tags)) for a in acts]
        raise RuntimeError
    acts = [build_activity(e) for e in reversed(events)]
    detect_batch(acts)
    assert [(a.flagged, sorted(a.tags)) for a in reversed(acts)] == in_order
    assert not Profile.objects.filter(key__in=["n:", "u:"]).exists()
    assert set(Profile.objects.values_list("key", flat=True)) == {"n:alice"}


@pytest.mark.django_db(transaction=True)
def test_labelled_scenario_through_import_train_import_export(tmp_path):
    """A small run of benchmarks/detection: labels never reach detection, only the scoring."""
    import json

    from django.core.management import call_command

    from tracking.simulator.traffic import DEFAULT_START, population, simulate, strip_labels

    split = DEFAULT_START + timedelta(days=7)
    labels, train, test = {}, [], []
    for r in simulate(users=10, days=9, seed=3, attacks_from=split):
        labels[r["id"]] = (r["label"], r["label_detail"])
        (train if r["timestamp"] < split.isoformat() else test).append(strip_labels(r))
    for name, records in (("train", train), ("test", test)):
        with open(tmp_path / f"{name}.ndjson", "w") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in records)
    # Ten users are too few to learn the office's new security gateway (three established
    # users within a day): the site names it, as a small organisation would.
    gateway = next(n for n in NETWORKS if n.kind == "gateway")
    # The simulated users have accounts, as on a real site: a failure naming one of them is
    # theirs (a name matching no account is stored masked, as a stuffing list's would be).
    accounts = get_user_model()
    accounts.objects.bulk_create(
        accounts(username=u.username, email=u.email) for u in population(users=10, days=9, seed=3)
    )
    with override_settings(TRACKING_TRUSTED_NETWORKS={"Security gateway": [f"AS{gateway.asn}"]}):
        call_command("tracking", "import", str(tmp_path / "train.ndjson"), "--quiet")
        call_command("tracking", "train", "--min-events", "10")
        call_command("tracking", "import", str(tmp_path / "test.ndjson"), "--quiet")
    call_command("tracking", "export", "--format", "ndjson", "-o", str(tmp_path / "out.ndjson"))
    exported = [json.loads(line) for line in open(tmp_path / "out.ndjson")]
    assert len(exported) == len(train) + len(test)

    sessions: dict[str, bool] = {}
    stuffing = [0, 0]
    benign = [0, 0]
    for rec in exported:
        label, detail = labels[rec["id"]]
        if label == "benign":
            assert "impossible_travel" not in rec["tags"], (detail, rec)
            if detail == "gateway":
                assert not rec["tags"], rec
            benign[0] += rec["flagged"]
            benign[1] += 1
        elif label.startswith("takeover"):
            sessions[detail] = sessions.get(detail, False) or rec["flagged"]
        elif label == "stuffing":
            stuffing[0] += rec["flagged"]
            stuffing[1] += 1
    assert sessions and all(sessions.values())
    assert stuffing[1] and stuffing[0] / stuffing[1] >= 0.9
    assert benign[0] / benign[1] <= 0.005


@pytest.mark.django_db
def test_profiles_keep_learning_places_with_detection_switched_off():
    with override_settings(TRACKING_DETECTORS=[], TRACKING_BUILTIN_RULES=False):
        ingest(history())
    loc = Profile.objects.get(key="n:alice").data["loc"]
    assert loc["city"] == "London"
    far = event(T0 + timedelta(days=11, hours=6), city="lagos", ua=ATTACKER_UA)
    ingest([far])
    assert "impossible_travel" in Activity.objects.get(id=far.id).tags


@pytest.mark.django_db
def test_a_batch_no_threshold_rule_can_reach_reads_no_look_back(django_assert_num_queries):
    """Threshold rules are gated by type and pre-filters: an API call cannot feed the failed-
    login or export windows, so its batch reads none of their look-backs."""
    from tracking.detection.config import pipeline, rule_dirs
    from tracking.detection.prefilter import threshold_history
    from tracking.pipeline.rows import build_activity

    rules = pipeline().rules
    assert rule_dirs() and any(r.threshold is not None for r in rules)
    api = [build_activity(event(T0, type="API", endpoint="/api/items/", method="GET"))]
    with django_assert_num_queries(0):
        assert threshold_history(rules, api) == {}
    failed = [build_activity(event(T0, status=401, username="victim1"))]
    with django_assert_num_queries(1, exact=False):
        found = threshold_history(rules, failed)
    assert found and all(r.threshold is not None for r in rules if r.id in found)


@pytest.mark.django_db
def test_look_back_reads_only_the_groups_of_the_batch():
    """A threshold window is measured per group: the look-back holds the stored rows of the
    batch's users/addresses only, so its size does not grow with everybody's traffic, and a
    burst split over batches is still caught."""
    from tracking.detection.config import pipeline
    from tracking.detection.prefilter import threshold_history
    from tracking.integrity.macs import mask_username
    from tracking.pipeline.rows import build_activity

    rules = pipeline().rules
    others = [
        event(T0 + timedelta(seconds=i), status=401, username=f"other{i}", ip=f"198.51.100.{i}")
        for i in range(1, 40)
    ]
    first = [
        event(T0 + timedelta(minutes=1, seconds=i), status=401, username="victim") for i in range(4)
    ]
    ingest(others + first)
    later = [build_activity(event(T0 + timedelta(minutes=2), status=401, username="victim"))]
    # "victim" names no account: ingest stores (and detection sees) its keyed hash.
    masked = mask_username("victim")
    later[0].username = masked
    found = threshold_history(rules, later)
    brute = found["trk-brute-force"]
    assert {r["username"] for r in brute} == {masked} and len(brute) == 4
    # Grouped by address: the victim's address, nobody else's.
    stuffing = found["trk-credential-stuffing"]
    assert {r["ip_address"] for r in stuffing} == {later[0].ip_address}
    # Two more failures in a later batch make six in 15 minutes: the rule fires.
    burst = [
        event(T0 + timedelta(minutes=3, seconds=i), status=401, username="victim") for i in range(2)
    ]
    ingest(burst)
    assert "brute_force" in Activity.objects.get(id=burst[-1].id).tags


def test_look_back_groups_with_no_address_match_stored_nulls():
    from tracking.detection.config import pipeline
    from tracking.detection.prefilter import _in_groups, _reach

    stuffing = [r for r in pipeline().rules if r.id == "trk-credential-stuffing"]
    act = Activity(type="AUTH", status=401, outcome="failure", ip_address=None, username="x")
    sql = str(Activity.objects.filter(_in_groups(stuffing, _reach(stuffing, [act]))).query)
    assert "IS NULL" in sql


@pytest.mark.django_db
def test_latest_model_version_is_read_once_per_interval_and_after_training(
    django_assert_num_queries, monkeypatch
):
    from tracking.detection import modelstore
    from tracking.detection.config import pipeline

    monkeypatch.setattr(modelstore.latest_versions, "interval", 3600.0)
    pipe = pipeline()
    modelstore.refresh_models(pipe)  # reads the (absent) latest version once
    with django_assert_num_queries(0):
        modelstore.refresh_models(pipe)
    forest = next(d for d in pipe.detectors if d.trainable)
    import random

    rng = random.Random(1)
    from detectors.outliers import FEATURE_NAMES

    rows = [[rng.random() for _ in FEATURE_NAMES] for _ in range(60)]
    trained = type(forest)(n_estimators=5).fit(rows)
    row = modelstore.save_model(forest.state_name(), trained.model_, trained.state_meta())
    # Training in this process is seen by the next batch, not after the interval.
    modelstore.refresh_models(pipe)
    assert pipe.versions[forest.name] == row.version and forest.fitted


@pytest.mark.django_db
def test_ingest_without_detection_learns_but_makes_no_verdict():
    """``ingest(..., detect=False)``: the same profile learning as with no detector and no
    rule configured, no finding, no verdict; settings are not touched."""
    from django.test.signals import setting_changed

    changed = []

    def note(**kwargs):
        changed.append(kwargs["setting"])

    setting_changed.connect(note, weak=False)
    try:
        ingest(history(), detect=False)
    finally:
        setting_changed.disconnect(note)
    assert changed == []
    assert Profile.objects.get(key="n:alice").data["loc"]["city"] == "London"
    far = event(T0 + timedelta(days=11, hours=6), city="lagos", kind="hosting", ua=ATTACKER_UA)
    ingest([far], detect=False)
    a = Activity.objects.get(id=far.id)
    assert a.tags == [] and not a.flagged and not a.findings.exists()
