"""Anonymous networks: the Anonymous-IP database and the Tor exit list give the activity's
``network_kind``; it travels through ingest, export/import, the API, the admin and the
dashboard; an anonymizing exit's place never yields impossible travel, the
``anonymous_network`` finding judges it instead."""

from __future__ import annotations

import io
import json
import os
import time
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

import pytest
from django.core import checks
from django.core.management import call_command
from django.test import override_settings

from detectors.anonymous_network import AnonymousNetwork
from detectors.engine import Engine
from detectors.impossible_travel import ImpossibleTravel
from tests.detection_helpers import ctx, obs, trained_profile
from tracking.checks import check_enrichment, check_recording
from tracking.enrich import geo, tor
from tracking.events import Event
from tracking.models import Activity, Finding
from tracking.simulator.world import NETWORKS, host

UTC = dt_timezone.utc

DESKTOP_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/124.0 Safari/537.36"
)
ATTACKER_UA = "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:109.0) Gecko/20100101 Firefox/115.0"
TS = datetime(2026, 2, 2, 8, 0, tzinfo=UTC)


def net(kind: str, city: str | None = None):
    return next(n for n in NETWORKS if n.kind == kind and (city is None or n.city == city))


# --- enrichment -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("vpn", "vpn"),
        ("hosting", "hosting"),
        ("tor", "tor"),
        ("residential_proxy", "residential_proxy"),
        ("public_proxy", "public_proxy"),
        ("residential", ""),
        ("corporate", ""),
    ],
)
def test_lookup_gives_the_network_kind_of_the_anonymous_ip_database(kind, expected):
    values = geo.lookup(host(net(kind), 7)).values
    assert values.get("network_kind", "") == expected
    assert values["country"]  # the place is still recorded (it is the exit's)


def test_tor_list_parses_both_published_formats():
    bulk = ["# comment", "", "192.0.2.10", "2001:db8::1", "not-an-address"]
    exit_addresses = [
        "ExitNode 0011BD2485AD45D984EC4159C88FC066E5E3300E",
        "Published 2026-12-01 10:00:00",
        "ExitAddress 198.51.100.23 2026-12-01 10:05:00",
    ]
    assert tor.parse(bulk) == {"192.0.2.10", "2001:db8::1"}
    assert tor.parse(exit_addresses) == {"198.51.100.23"}


def test_tor_exit_list_marks_addresses_and_follows_the_file(tmp_path, monkeypatch):
    listed = host(net("residential", "london"), 33)
    path = tmp_path / "tor-exits.txt"
    path.write_text(f"{listed}\n")
    with override_settings(TRACKING_TOR_EXIT_LIST=str(path)):
        assert geo.lookup(listed).values["network_kind"] == "tor"
        assert (
            geo.lookup(host(net("residential", "london"), 34)).values.get("network_kind", "") == ""
        )
        # The list changes on disk: picked up after the re-check interval.
        path.write_text("# emptied\n")
        stamp = time.time() + 5
        os.utime(path, (stamp, stamp))
        monkeypatch.setattr(tor, "RECHECK_SECONDS", 0.0)
        assert not tor.is_exit(listed)


def test_tor_list_setting_is_checked():
    with override_settings(TRACKING_TOR_EXIT_LIST="/nonexistent/tor.txt"):
        ids = {m.id for m in check_enrichment()}
    assert "tracking.W100" in ids
    with override_settings(TRACKING_TOR_EXIT_LIST=42):
        ids = {m.id for m in check_enrichment()}
    assert "tracking.E100" in ids


# --- the detector and impossible travel, on plain data ----------------------------------


def test_a_new_anonymous_network_scores_enough_to_flag_and_explains_itself():
    profile = trained_profile()
    o = obs("amsterdam", asn=65110, isp="FastVPN Exit", ip="45.150.1.9", network_kind="vpn")
    (finding,) = AnonymousNetwork().fit().score(o, profile, ctx(o, profile))
    assert finding.tag == "anonymous_network" and finding.score >= 0.7
    assert "VPN exit" in finding.reason and "not the user's" in finding.reason
    tor_obs = obs("amsterdam", asn=65300, ip="171.25.193.9", network_kind="tor")
    (tor_finding,) = AnonymousNetwork().fit().score(tor_obs, profile, ctx(tor_obs, profile))
    assert tor_finding.score > finding.score and tor_finding.severity == "high"


def test_the_users_own_exit_is_informational_and_trusted_networks_are_not_judged():
    vpn = dict(asn=65110, isp="FastVPN Exit", ip="45.150.1.9", network_kind="vpn")
    profile = trained_profile(city="london", **vpn)
    o = obs("london", minutes=5, **vpn)
    (finding,) = AnonymousNetwork().fit().score(o, profile, ctx(o, profile))
    assert finding.score < 0.7 and finding.severity == "low"
    trusted = obs("london", minutes=5, trusted_network="Security gateway", **vpn)
    assert AnonymousNetwork().fit().score(trusted, trained_profile(), ctx(trusted)) == []


def test_no_impossible_travel_to_or_from_an_anonymizing_exit():
    profile = trained_profile()  # London broadband
    detector = ImpossibleTravel().fit()
    exit_far = obs("sydney", minutes=10, asn=65120, ip="193.32.1.5", network_kind="hosting")
    assert detector.score(exit_far, profile, ctx(exit_far, profile)) == []
    # The same jump on broadband is impossible travel: the exemption is the network kind.
    broadband_far = obs("sydney", minutes=10, asn=64660, ip="175.40.1.5")
    assert detector.score(broadband_far, profile, ctx(broadband_far, profile))
    # An exit's place never becomes the user's position either.
    engine = Engine([detector, AnonymousNetwork().fit()], flag_threshold=0.99)
    profiles = {"n:alice": profile}
    engine.run([exit_far], profiles)
    assert profiles["n:alice"].location["city"] == "London"


# --- through the database ---------------------------------------------------------------


def event(ts, *, network, index=20, ua=DESKTOP_UA, type="AUTH", username="alice", status=200):
    return Event(
        type=type,
        timestamp=ts,
        username=username,
        ip_address=host(network, index),
        user_agent=ua,
        endpoint="/accounts/login/",
        method="POST",
        status=status,
        duration=100.0,
    )


def history():
    home = net("residential", "london")
    return [
        event(TS + timedelta(days=d, hours=h * 5), network=home) for d in range(12) for h in (0, 1)
    ]


def ingest(events):
    from tracking.pipeline.ingest import ingest as run

    return run(events, source="import")


@pytest.mark.django_db
def test_far_hosting_exit_is_stored_with_its_kind_flagged_as_anonymous_not_as_travel():
    ingest(history())
    last = TS + timedelta(days=12)
    ingest([event(last, network=net("residential", "london"))])
    far = event(last + timedelta(minutes=15), network=net("hosting", "jakarta"), ua=ATTACKER_UA)
    ingest([far])
    a = Activity.objects.get(id=far.id)
    assert a.network_kind == "hosting" and a.city == "Jakarta"
    assert a.flagged and "anonymous_network" in a.tags and "impossible_travel" not in a.tags
    f = Finding.objects.get(activity=a, detector="anonymous_network")
    assert f.evidence["network_kind"] == "hosting" and f.score >= 0.7


@pytest.mark.django_db
def test_network_kind_is_in_the_row_mac_of_format_2_and_format_1_rows_still_verify():
    from tracking.integrity import macs

    ingest(
        [event(TS, network=net("vpn", "london")), event(TS, network=net("residential", "london"))]
    )
    vpn_row = Activity.objects.get(network_kind="vpn")
    plain_row = Activity.objects.get(network_kind="")
    assert macs.row_format(vpn_row.mac) == 2 and macs.row_ok(vpn_row) and macs.row_ok(plain_row)
    assert macs.canonical_bytes(vpn_row).endswith(b'"vpn"]')
    vpn_row.network_kind = "residential_proxy"
    assert not macs.row_ok(vpn_row)  # a changed kind no longer verifies
    vpn_row.network_kind = ""
    assert not macs.row_ok(vpn_row)  # nor a removed one
    # A row written under format 1 (which covers none of the later fields) still verifies.
    plain_row.mac = macs.sign(macs.canonical_bytes(plain_row, 1), "row")
    assert macs.row_format(plain_row.mac) == 1 and macs.row_ok(plain_row)


@pytest.mark.django_db
def test_network_kind_round_trips_through_export_and_import(tmp_path):
    ingest([event(TS, network=net("tor")), event(TS + timedelta(minutes=1), network=net("vpn"))])
    out = tmp_path / "export.ndjson"
    call_command("tracking", "export", "--format", "ndjson", "-o", str(out))
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["network_kind"] for r in records) == ["tor", "vpn"]
    Activity.objects.all().delete()
    call_command("tracking", "import", str(out), "--quiet", stdout=io.StringIO())
    assert sorted(Activity.objects.values_list("network_kind", flat=True)) == ["tor", "vpn"]


@pytest.mark.django_db
def test_import_refuses_an_unknown_network_kind_and_keeps_the_rest(tmp_path):
    good = {"timestamp": TS.isoformat(), "type": "AUTH", "ip_address": "81.2.69.10"}
    bad = {**good, "timestamp": (TS + timedelta(minutes=1)).isoformat(), "network_kind": "darknet"}
    path = tmp_path / "in.ndjson"
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    out, err = io.StringIO(), io.StringIO()
    call_command("tracking", "import", str(path), stdout=out, stderr=err)
    assert "1 imported" in out.getvalue() and "1 bad line" in out.getvalue()
    assert "network_kind must be one of" in err.getvalue()
    assert Activity.objects.count() == 1


@pytest.mark.django_db
def test_api_admin_and_dashboard_show_the_network_kind(staff_client, staff_user):
    from django.test import Client

    ingest([event(TS, network=net("vpn", "london"))])
    a = Activity.objects.get()
    detail = staff_client.get(f"/api/tracking/activities/{a.pk}/").json()
    assert detail["network_kind"] == "vpn"
    browser = Client()
    browser.force_login(staff_user)
    page = browser.get(f"/admin/tracking/activity/{a.pk}/change/").content.decode()
    assert "Network kind" in page and "VPN exit" in page
    listing = browser.get("/admin/tracking/activity/?network_kind__exact=vpn").content.decode()
    assert str(a.pk) in listing
    dash = browser.get(f"/api/tracking/dashboard/activity/{a.pk}/").content.decode()
    assert "FastVPN Exit · VPN exit" in dash


def test_check_framework_accepts_the_defaults():
    assert not [m for m in check_recording() + check_enrichment() if m.level >= checks.ERROR]


@pytest.mark.django_db
def test_spraying_from_rotating_exits_of_one_hosting_network_is_flagged_not_from_an_isp():
    hosting = net("hosting", "amsterdam")
    spray = [
        event(
            TS + timedelta(minutes=7 * i),
            network=hosting,
            index=30 + i,
            username=f"user{i}",
            status=401,
        )
        for i in range(6)
    ]
    home = net("residential", "london")
    typos = [
        event(
            TS + timedelta(minutes=7 * i),
            network=home,
            index=30 + i,
            username=f"home{i}",
            status=401,
        )
        for i in range(6)
    ]
    ingest(spray + typos)
    tagged = ["network_spraying" in Activity.objects.get(id=e.id).tags for e in spray]
    assert tagged == [False, False, False, False, True, True]
    assert not any("network_spraying" in Activity.objects.get(id=e.id).tags for e in typos)
