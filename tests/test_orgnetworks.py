"""Organisation networks: configured (``TRACKING_TRUSTED_NETWORKS``), learned from several
established users within a day, taught by a reviewer's dismissal; shown and revocable."""

from __future__ import annotations

from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

import pytest
from django.test import Client, override_settings

from detectors.orgnetworks import NetworkLearner, parse_trusted
from detectors.population import Population
from detectors.profile import UserProfile
from tests.detection_helpers import T0, obs
from tracking.checks import check_detection
from tracking.events import Event
from tracking.models import Activity, Finding, OrganisationNetwork
from tracking.simulator.world import NETWORKS, host

UTC = dt_timezone.utc

TS = datetime(2026, 2, 2, 8, 0, tzinfo=UTC)
UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/124.0 Safari/537.36"
HOME = next(n for n in NETWORKS if n.kind == "residential" and n.city == "london")
# A cloud security gateway in the users' own country: a hosting network.
GATEWAY = next(n for n in NETWORKS if n.kind == "hosting" and n.country == "GB")


# --- configuration ----------------------------------------------------------------------


def test_parse_trusted_accepts_cidrs_and_as_numbers_by_name():
    trusted = parse_trusted({"Office": ["198.51.100.0/24", "AS64700"], "Gateway": 65100})
    assert trusted.name_for("198.51.100.7", None) == "Office"
    assert trusted.name_for("203.0.113.1", 64700) == "Office"
    assert trusted.name_for("203.0.113.1", 65100) == "Gateway"
    assert trusted.name_for("203.0.113.1", 1) == ""


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (["10.0.0.0/8"], "must be a dict"),
        ({"Office": ["not-a-network"]}, "'Office': 'not-a-network' is neither a CIDR nor an AS"),
        ({"Office": []}, "non-empty list"),
        ({"": ["10.0.0.0/8"]}, "non-empty text"),
        ({"Office": [True]}, "neither a CIDR nor an AS number"),
    ],
)
def test_invalid_trusted_networks_are_a_system_check_error(value, message):
    with override_settings(TRACKING_TRUSTED_NETWORKS=value):
        errors = [e for e in check_detection() if e.id == "tracking.E057"]
    assert len(errors) == 1 and message in errors[0].msg


# --- the learner on plain data ----------------------------------------------------------


def established(key: str, n: int = 25) -> UserProfile:
    p = UserProfile(key=key)
    for i in range(n):
        o = obs("london", at=T0 - timedelta(days=20) + timedelta(hours=12 * i), username=key)
        p.note(o)
        p.learn(o)
    return p


def gateway_login(key: str, hours: float, ua: str = "Mozilla/5.0 desktop"):
    return obs(
        "london", at=T0 + timedelta(hours=hours), asn=65100, ip="185.220.2.9", username=key, ua=ua
    )


def test_learner_needs_several_established_users_with_their_own_browser_within_a_day():
    learner = NetworkLearner(min_users=3)
    assert learner.observe(gateway_login("a", 0), established("a")) == ""
    # A stranger's browser on the same network is no evidence.
    assert learner.observe(gateway_login("b", 1, ua="curl/8"), established("b")) == ""
    # A user still learning is no evidence either.
    assert learner.observe(gateway_login("c", 2), established("c", n=3)) == ""
    assert learner.observe(gateway_login("d", 3), established("d")) == ""
    assert learner.observe(gateway_login("e", 4), established("e")) == "AS65100"
    assert learner.learned["AS65100"] == ["a", "d", "e"]


def test_a_network_the_site_already_uses_is_never_learned():
    """Three users visiting friends on the big consumer ISP is not an organisation network."""
    population = Population()
    for _ in range(50):
        population.add("site_asn", "65100")
    learner = NetworkLearner(min_users=3)
    for i, key in enumerate("abcde"):
        assert learner.observe(gateway_login(key, i), established(key), population) == ""
    assert learner.learned == {} and learner.candidates == {}


def test_evidence_older_than_the_window_does_not_count():
    learner = NetworkLearner(min_users=3, window_days=1)
    learner.observe(gateway_login("a", 0), established("a"))
    learner.observe(gateway_login("b", 30), established("b"))
    assert learner.observe(gateway_login("c", 40), established("c")) == ""  # "a" expired
    assert set(learner.candidates["AS65100"]) == {"b", "c"}


# --- through the database ---------------------------------------------------------------


def event(ts, username, network, index=20, ua=UA):
    return Event(
        type="AUTH",
        timestamp=ts,
        username=username,
        ip_address=host(network, index),
        user_agent=ua,
        endpoint="/accounts/login/",
        method="POST",
        status=200,
        duration=100.0,
    )


def ingest(events):
    from tracking.pipeline.ingest import ingest as run

    return run(events, source="import")


def team(names):
    ingest(
        [
            event(TS + timedelta(days=d, hours=h * 5), name, HOME, index=10 + i)
            for i, name in enumerate(names)
            for d in range(12)
            for h in (0, 1)
        ]
    )


def gateway(name, minutes):
    return event(TS + timedelta(days=12, minutes=minutes), name, GATEWAY)


@pytest.mark.django_db
def test_a_configured_gateway_is_never_new_anonymous_or_travelled_to():
    team(["ann"])
    with override_settings(TRACKING_TRUSTED_NETWORKS={"Security gateway": [f"AS{GATEWAY.asn}"]}):
        login = gateway("ann", 0)
        ingest([login])
    a = Activity.objects.get(id=login.id)
    assert a.network_kind == "hosting"
    assert not a.flagged and a.tags == []
    assert not Finding.objects.filter(activity=a).exists()


@pytest.mark.django_db
def test_a_gateway_several_users_reach_is_learned_shown_and_revocable(staff_user):
    names = ["ann", "bob", "cid", "dee", "eve"]
    team(names)
    first = [gateway(n, 10 * i) for i, n in enumerate(names[:3])]
    for e in first:
        ingest([e])
    row = OrganisationNetwork.objects.get(network=f"AS{GATEWAY.asn}")
    assert row.source == "learned" and row.users == ["n:ann", "n:bob", "n:cid"]
    later = gateway("dee", 60)
    ingest([later])
    a = Activity.objects.get(id=later.id)
    assert not a.flagged and "anonymous_network" not in a.tags and "new_asn" not in a.tags

    browser = Client()
    browser.force_login(staff_user)
    page = browser.get("/api/tracking/dashboard/networks/").content.decode()
    assert f"AS{GATEWAY.asn}" in page and "Revoke" in page
    response = browser.post(f"/api/tracking/dashboard/networks/{row.pk}/revoke/")
    assert response.status_code == 302
    row.refresh_from_db()
    assert row.revoked_at is not None and row.revoked_by == staff_user.get_username()
    after = gateway("eve", 70)
    ingest([after])
    assert Activity.objects.get(id=after.id).flagged  # no longer trusted


@pytest.mark.django_db
def test_only_a_batch_with_a_successful_login_of_a_user_reads_the_stored_candidates(
    monkeypatch,
):
    """The candidates are read per batch only when the batch can give evidence: anonymous
    traffic and failed logins skip the query, and learning still spans batches."""
    from tracking.detection import orgnetworks

    reads = []
    real = orgnetworks.load_learner
    monkeypatch.setattr(
        orgnetworks, "load_learner", lambda epoch: reads.append(epoch) or real(epoch)
    )
    anonymous = Event(type="API", timestamp=TS, ip_address=host(GATEWAY, 30), endpoint="/api/x")
    failed = event(TS, "ann", GATEWAY)
    failed.status = 401
    ingest([anonymous])
    ingest([failed])
    assert reads == []
    names = ["ann", "bob", "cid"]
    team(names)
    assert len(reads) == 1
    for i, name in enumerate(names):  # one batch each: the candidates come from the table
        ingest([gateway(name, 10 * i)])
    assert len(reads) == 4
    assert OrganisationNetwork.objects.filter(network=f"AS{GATEWAY.asn}").exists()


@pytest.mark.django_db
def test_revoking_needs_the_review_permission(django_user_model):
    from django.contrib.auth.models import Permission

    viewer = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_activity"))
    row = OrganisationNetwork.objects.create(network="AS65100", source="learned")
    browser = Client()
    browser.force_login(viewer)
    assert browser.get("/api/tracking/dashboard/networks/").status_code == 200
    assert browser.post(f"/api/tracking/dashboard/networks/{row.pk}/revoke/").status_code == 403
    row.refresh_from_db()
    assert row.revoked_at is None


@pytest.mark.django_db
def test_dismissing_with_teach_network_trusts_it_for_everyone(staff_client):
    team(["ann", "bob"])
    first = gateway("ann", 0)
    ingest([first])
    assert Activity.objects.get(id=first.id).flagged
    url = f"/api/tracking/activities/{first.id}/flag/"
    refused = staff_client.patch(
        url, {"review_status": "confirmed", "teach_network": True}, format="json"
    )
    assert refused.status_code == 400 and "teach_network" in refused.json()
    assert not OrganisationNetwork.objects.exists()
    ok = staff_client.patch(
        url, {"review_status": "dismissed", "teach_network": True}, format="json"
    )
    assert ok.status_code == 200
    row = OrganisationNetwork.objects.get()
    assert row.source == "review" and row.network == f"AS{GATEWAY.asn}"
    other = gateway("bob", 30)
    ingest([other])
    assert not Activity.objects.get(id=other.id).flagged
