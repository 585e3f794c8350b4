"""Every list filter: what it matches, and a 400 naming it for a wrong value (never a 500)."""

from __future__ import annotations

from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

import pytest

from tracking.models import Finding
from tracking.testing.factories import make_activity

UTC = dt_timezone.utc

pytestmark = pytest.mark.django_db
URL = "/api/tracking/activities/"


def ids(client, **params):
    resp = client.get(URL, params)
    assert resp.status_code == 200, resp.content
    return {r["id"] for r in resp.json()["results"]}


def test_simple_field_filters(staff_client, staff_user, plain_user):
    a = make_activity(
        type="AUTH",
        user=staff_user,
        country="GB",
        city="London",
        asn=64600,
        status=200,
        method="POST",
        endpoint="/api/auth/login/",
        review_status="confirmed",
        severity="high",
    )
    b = make_activity(
        type="PAYMENT",
        user=plain_user,
        country="FR",
        city="Paris",
        asn=64610,
        status=403,
        method="GET",
        endpoint="/api/payments/42/",
        severity="low",
    )
    A, B = {str(a.id)}, {str(b.id)}
    assert ids(staff_client, type="AUTH") == A
    assert ids(staff_client, type="AUTH,PAYMENT") == A | B
    assert ids(staff_client, user=staff_user.pk) == A
    assert ids(staff_client, username="plain") == B
    assert ids(staff_client, country="fr") == B
    assert ids(staff_client, city="london") == A
    assert ids(staff_client, asn=64610) == B
    assert ids(staff_client, status=403) == B
    assert ids(staff_client, status_class="2xx") == A
    assert ids(staff_client, status_class="4XX") == B
    assert ids(staff_client, method="post") == A
    assert ids(staff_client, endpoint="/api/payments/42/") == B
    assert ids(staff_client, endpoint="/api/payments/") == set()
    assert ids(staff_client, endpoint_prefix="/api/payments/") == B
    assert ids(staff_client, review_status="confirmed") == A
    assert ids(staff_client, severity="low") == B


def test_flagged_tags_detector(staff_client):
    a = make_activity(flagged=True, tags=["impossible_travel", "new_country"])
    b = make_activity(flagged=False, tags=["new_country"])
    c = make_activity(tags=[])
    Finding.objects.create(
        activity_id=b.pk,
        timestamp=b.timestamp,
        detector="geo",
        tag="new_country",
        score=0.3,
        reason="r",
    )
    assert ids(staff_client, flagged="true") == {str(a.id)}
    assert ids(staff_client, flagged="false") == {str(b.id), str(c.id)}
    assert ids(staff_client, tags="impossible_travel,new_country") == {str(a.id), str(b.id)}
    assert ids(staff_client, tags_all="impossible_travel,new_country") == {str(a.id)}
    assert ids(staff_client, tags="new") == set()  # whole tags only
    assert ids(staff_client, detector="geo") == {str(b.id)}


def test_ip_exact_and_cidr(staff_client):
    rows = {
        ip: make_activity(ip_address=ip)
        for ip in (
            "10.1.2.3",
            "10.200.0.1",
            "11.0.0.1",
            "192.168.1.1",
            "192.168.17.9",
            "2001:db8::1",
            "2001:db9::1",
        )
    }

    def got(**p):
        found = ids(staff_client, **p)
        return {r for r, a in rows.items() if str(a.id) in found}

    assert got(ip_address="10.1.2.3") == {"10.1.2.3"}
    assert got(ip_address="10.0.0.0/8") == {"10.1.2.3", "10.200.0.1"}
    assert got(ip_address="192.168.0.0/20") == {"192.168.1.1"}
    assert got(ip_address="192.168.16.0/20") == {"192.168.17.9"}
    assert got(ip_address="192.168.1.1/32") == {"192.168.1.1"}
    assert got(ip_address="0.0.0.0/0") == {
        "10.1.2.3",
        "10.200.0.1",
        "11.0.0.1",
        "192.168.1.1",
        "192.168.17.9",
    }
    assert got(ip_address="2001:db8::/32") == {"2001:db8::1"}
    assert got(ip_address="2001:0db8:0000::1") == {"2001:db8::1"}
    assert got(ip_address="10.1.0.0/16") == {"10.1.2.3"}
    assert got(ip_address="1.2.3.4") == set()


def test_duration_and_time_range(staff_client):
    now = datetime.now(UTC).replace(microsecond=0)
    old = make_activity(timestamp=datetime(2024, 1, 31, 23, 30, tzinfo=UTC), duration=10.0)
    mid = make_activity(timestamp=datetime(2024, 2, 1, 0, 0, tzinfo=UTC), duration=100.0)
    new = make_activity(timestamp=now - timedelta(hours=1), duration=1000.0)
    assert ids(staff_client, duration_min=50) == {str(mid.id), str(new.id)}
    assert ids(staff_client, duration_max=100) == {str(old.id), str(mid.id)}
    assert ids(staff_client, duration_min=50, duration_max=500) == {str(mid.id)}
    assert ids(staff_client, since="2024-02-01") == {str(mid.id), str(new.id)}
    assert ids(staff_client, until="2024-01-31") == {str(old.id)}  # a bare date includes the day
    assert ids(staff_client, since="2024-01-31T23:00:00Z", until="2024-02-01T00:00:00Z") == {
        str(old.id)
    }
    assert ids(staff_client, since="2024-02-01T01:00:00+01:00", until="2024-02-01T00:00:01Z") == {
        str(mid.id)
    }
    # an unencoded "+" arrives as a space
    resp = staff_client.get(URL + "?since=2024-02-01T01:00:00+01:00")
    assert resp.status_code == 200 and {r["id"] for r in resp.json()["results"]} == {
        str(mid.id),
        str(new.id),
    }


def test_search_over_user_ip_endpoint(staff_client):
    a = make_activity(username="alice.smith", ip_address="81.2.69.10", endpoint="/api/auth/login/")
    b = make_activity(username="bob", ip_address="90.80.1.5", endpoint="/api/payments/")
    assert ids(staff_client, search="ALICE") == {str(a.id)}
    assert ids(staff_client, search="90.80.1.5") == {str(b.id)}
    assert ids(staff_client, search="81.2.") == {str(a.id)}
    assert ids(staff_client, search="payments") == {str(b.id)}
    assert ids(staff_client, search="nobody") == set()


@pytest.mark.parametrize(
    "param, value",
    [
        ("since", "yesterday"),
        ("since", "2024-13-45"),
        ("until", "2024-02-30T10:00:00"),
        ("user", "abc"),
        ("ip_address", "999.1.1.1"),
        ("ip_address", "10.0.0.0/33"),
        ("ip_address", "not-an-ip"),
        ("asn", "AS123"),
        ("asn", "1.5"),
        ("asn", "-3"),
        ("asn", "99999999999999999999999"),
        ("flagged", "maybe"),
        ("status", "ok"),
        ("status", "999"),
        ("status_class", "6xx"),
        ("status_class", "2"),
        ("method", "GET;DROP"),
        ("country", "GBR"),
        ("country", "1"),
        ("review_status", "closed"),
        ("severity", "extreme"),
        ("duration_min", "fast"),
        ("duration_max", "NaN"),
        ("tags", "a b"),
        ("tags_all", "<script>"),
        ("type", "AUTH;DROP"),
        ("detector", "x y"),
        ("ordering", "user_agent"),
        ("search", "nul\x00byte"),
        ("username", "nul\x00byte"),
    ],
)
def test_wrong_values_are_400_naming_the_field(staff_client, param, value):
    make_activity()
    for url in (URL, "/api/tracking/stats/", "/api/tracking/activities/export/"):
        resp = staff_client.get(url, {param: value})
        assert resp.status_code == 400, (url, param, value, resp.status_code)
        assert param in resp.json(), resp.json()


def test_since_message_is_djangos(staff_client):
    resp = staff_client.get(URL, {"since": "nope"})
    assert resp.json() == {"since": ["Enter a valid date/time."]}


def test_since_after_until_is_400(staff_client):
    resp = staff_client.get(URL, {"since": "2024-02-03", "until": "2024-02-01"})
    assert resp.status_code == 400 and "until" in resp.json()


@pytest.mark.parametrize("value", ["9223372036854775808", "-9223372036854775809", "1e3", "x"])
def test_user_id_out_of_any_column_range_is_400(staff_client, value):
    for url in (URL, "/api/tracking/stats/"):
        resp = staff_client.get(url, {"user": value})
        assert resp.status_code == 400, (url, value)
        assert resp.json() == {"user": ["Enter a valid user id."]}


def test_unknown_parameters_are_ignored(staff_client):
    make_activity()
    assert staff_client.get(URL, {"colour": "blue"}).json()["count"] == 1


PARAMS = sorted(
    {
        "type",
        "user",
        "username",
        "ip_address",
        "country",
        "city",
        "asn",
        "flagged",
        "tags",
        "tags_all",
        "status",
        "status_class",
        "method",
        "endpoint",
        "endpoint_prefix",
        "review_status",
        "severity",
        "duration_min",
        "duration_max",
        "since",
        "until",
        "search",
        "detector",
        "ordering",
        "page",
        "page_size",
        "cursor",
    }
)


def test_random_query_strings_never_500(staff_client, monkeypatch):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from tracking.api.throttling import BurstRateThrottle, SustainedRateThrottle

    monkeypatch.setattr(BurstRateThrottle, "THROTTLE_RATES", {"burst": "100000/min"})
    monkeypatch.setattr(SustainedRateThrottle, "THROTTLE_RATES", {"sustained": "100000/min"})
    make_activity(tags=["a"], ip_address="10.0.0.1")
    text = st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
        max_size=40,
    )
    values = st.one_of(
        text,
        st.integers(min_value=-(10**20), max_value=10**20).map(str),
        st.sampled_from(
            ["2024-01-01", "1.5e308", "-1", "10.0.0.0/8", "::/0", "true", "4xx", "-timestamp"]
        ),
    )

    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.dictionaries(st.sampled_from(PARAMS), values, max_size=4))
    def run(params):
        for url in (URL, "/api/tracking/stats/"):
            resp = staff_client.get(url, params)
            assert resp.status_code in (200, 400, 404), (url, params, resp.status_code)
            if resp.status_code == 400:
                assert set(resp.json()) <= set(PARAMS), resp.json()

    run()
