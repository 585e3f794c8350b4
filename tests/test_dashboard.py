"""The security dashboard on the server side: access, CSP, queue, detail, feed, charts, checks.

The browser behaviour (clicks, keyboard, live feed in a real page) is in test_browser.py.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from django.core import checks
from django.test import override_settings
from django.urls import reverse

from tracking.dashboard import csp
from tracking.dashboard.checks import dashboard_messages
from tracking.dashboard.feed import parse_cursor
from tracking.dashboard.timeline import haversine_km, legs
from tracking.models import Activity, Finding, Review
from tracking.testing.factories import make_activity

UTC = dt_timezone.utc

pytestmark = pytest.mark.django_db

POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
INDEX = "/api/tracking/dashboard/"
FEED = "/api/tracking/dashboard/feed/"
CHARTS = "/api/tracking/dashboard/charts/"
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)

LONDON = {
    "city": "London",
    "region": "England",
    "country": "GB",
    "latitude": 51.5074,
    "longitude": -0.1278,
    "accuracy_radius": 10,
    "asn": 64600,
    "isp": "Thames Broadband",
    "ip_address": "81.2.69.10",
}
PARIS = {
    "city": "Paris",
    "region": "Ile-de-France",
    "country": "FR",
    "latitude": 48.8566,
    "longitude": 2.3522,
    "accuracy_radius": 10,
    "asn": 64610,
    "isp": "Gallic Fibre",
    "ip_address": "90.80.1.10",
}
LAGOS = {
    "city": "Lagos",
    "region": "Lagos",
    "country": "NG",
    "latitude": 6.5244,
    "longitude": 3.3792,
    "accuracy_radius": 20,
    "asn": 64680,
    "isp": "Eko Broadband",
    "ip_address": "105.112.1.10",
}

XSS = "<script>alert('x')</script>"
IMG = '<img src=x onerror="alert(1)">'
SQL = "'; DROP TABLE tracking_activity; --"


def flagged(
    when: datetime, *, tag: str = "impossible_travel", reason: str = "", **fields
) -> Activity:
    """A flagged activity with one finding, as detection would have stored it."""
    fields.setdefault("username", "alice")
    fields.setdefault("severity", "high")
    fields.setdefault("risk_score", 0.9)
    fields.setdefault("type", "AUTH")
    act = make_activity(timestamp=when, flagged=True, tags=[tag], **fields)
    Finding.objects.create(
        activity=act,
        timestamp=act.timestamp,
        detector=tag,
        tag=tag,
        score=0.9,
        severity=fields["severity"],
        reason=reason or f"{tag} reason for {fields['username']}",
        evidence={"speed_kmh": 7100, "from": "London"},
        flag=True,
    )
    return act


@pytest.fixture
def staff_client(client, staff_user):
    client.force_login(staff_user)
    return client


# ----------------------------------------------------------------------------- access


def test_anonymous_is_sent_to_the_admin_login(client):
    response = client.get(INDEX)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
    assert "next=/api/tracking/dashboard/" in response["Location"]
    assert response["Content-Security-Policy"] == POLICY


def test_non_staff_user_is_refused(client, plain_user):
    client.force_login(plain_user)
    for url in (INDEX, FEED, CHARTS):
        response = client.get(url)
        assert response.status_code == 403, url
        assert response["Content-Security-Policy"] == POLICY
    assert b"Access denied" in client.get(INDEX).content


def test_staff_without_view_permission_is_refused(client, django_user_model):
    user = django_user_model.objects.create_user("nosy", password="pw", is_staff=True)
    client.force_login(user)
    assert client.get(INDEX).status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="view_activity"))
    client.force_login(django_user_model.objects.get(pk=user.pk))
    assert client.get(INDEX).status_code == 200


def test_superuser_sees_the_dashboard(client, django_user_model):
    admin = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(admin)
    assert client.get(INDEX).status_code == 200


def test_json_endpoints_refuse_anonymous_with_json(client):
    for url in (FEED, CHARTS):
        response = client.get(url)
        assert response.status_code == 403
        assert response["Content-Type"] == "application/json"
        assert response["Content-Security-Policy"] == POLICY


# ----------------------------------------------------------------------------- CSP and markup


def test_every_dashboard_response_has_the_strict_policy(staff_client):
    act = flagged(NOW)
    urls = [
        INDEX,
        INDEX + "?severity=bogus",
        reverse("tracking:dashboard:activity", args=[act.pk]),
        reverse("tracking:dashboard:activity", args=["not-a-uuid"]),
        FEED,
        FEED + "?after=garbage",
        CHARTS,
    ]
    for url in urls:
        response = staff_client.get(url)
        assert response["Content-Security-Policy"] == POLICY, url
        assert "unsafe-inline" not in response["Content-Security-Policy"]
        assert response["X-Frame-Options"] == "DENY"
        assert response["X-Content-Type-Options"] == "nosniff"
        assert "no-store" in response["Cache-Control"]
    assert csp.POLICY == POLICY


TEMPLATES = (
    Path(__file__).resolve().parent.parent / "tracking" / "templates" / "tracking" / "dashboard"
)
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I)
STYLE_ATTR = re.compile(r"\sstyle\s*=", re.I)
STYLE_TAG = re.compile(r"<style", re.I)
HANDLER = re.compile(r"\son[a-z]+\s*=", re.I)
JS_URL = re.compile(r"javascript:", re.I)


def _assert_no_inline_code(text: str, where: str) -> None:
    assert not INLINE_SCRIPT.search(text), f"inline <script> in {where}"
    assert not STYLE_ATTR.search(text), f"style= attribute in {where}"
    assert not STYLE_TAG.search(text), f"<style> element in {where}"
    assert not HANDLER.search(text), f"on* handler in {where}"
    assert not JS_URL.search(text), f"javascript: URL in {where}"


def test_templates_have_no_inline_script_style_or_handlers():
    files = sorted(TEMPLATES.glob("*.html"))
    assert {f.name for f in files} >= {"base.html", "index.html", "activity.html", "403.html"}
    for path in files:
        _assert_no_inline_code(path.read_text(), path.name)


def test_rendered_pages_load_only_same_origin_assets(staff_client):
    act = flagged(NOW, username="bob")
    for url in (INDEX, reverse("tracking:dashboard:activity", args=[act.pk])):
        html = staff_client.get(url).content.decode()
        _assert_no_inline_code(html, url)
        assert '<script src="/static/tracking/dashboard/dashboard.js" defer>' in html
        assert 'href="/static/tracking/dashboard/dashboard.css"' in html
        assert "http://" not in html and "https://" not in html  # no CDN, no external font


def test_static_js_never_uses_innerhtml():
    js = (
        TEMPLATES.parent.parent.parent / "static" / "tracking" / "dashboard" / "dashboard.js"
    ).read_text()
    assert "innerHTML" not in js and "outerHTML" not in js and "insertAdjacentHTML" not in js
    assert "eval(" not in js and "document.write" not in js
    assert "textContent" in js


# ----------------------------------------------------------------------------- flagged queue


def _queue_ids(response) -> list[str]:
    return re.findall(
        r'<tr class="queue-row[^"]*" data-id="([0-9a-f-]+)"', response.content.decode()
    )


def test_queue_lists_open_flagged_newest_first(staff_client):
    old = flagged(NOW - timedelta(hours=2), username="old")
    new = flagged(NOW, username="new")
    mid = flagged(NOW - timedelta(hours=1), username="mid")
    make_activity(timestamp=NOW, username="quiet", flagged=False)
    flagged(NOW, username="done", review_status="dismissed")
    response = staff_client.get(INDEX)
    assert response.status_code == 200
    assert _queue_ids(response) == [str(new.pk), str(mid.pk), str(old.pk)]


def test_queue_row_shows_who_where_device_reasons_and_risk(staff_client):
    flagged(
        NOW,
        username="carol",
        reason="London → Lagos, 4,980 km in 42 min = 7,100 km/h",
        device="iPhone",
        os="iOS",
        browser="Mobile Safari",
        risk_score=0.87,
        **LAGOS,
    )
    html = staff_client.get(INDEX).content.decode()
    row = html[html.index('class="queue-row') :]
    row = row[: row.index("</tr>")]
    for text in (
        "carol",
        "Lagos",
        "NG",
        "AS64680 Eko Broadband",
        "iPhone · iOS · Mobile Safari",
        "0.87",
        "High",
    ):
        assert text in row, text
    assert "London → Lagos, 4,980 km in 42 min = 7,100 km/h" in row
    assert 'data-flag-url="/api/tracking/activities/' in row
    assert "Confirm" in row and "Dismiss" in row


def test_queue_badge_counts_the_whole_queue(staff_client):
    with override_settings(TRACKING_DASHBOARD_PAGE_SIZE=2):
        for i in range(5):
            flagged(NOW - timedelta(minutes=i), username=f"u{i}")
        flagged(NOW, username="closed", review_status="confirmed")
        html = staff_client.get(INDEX).content.decode()
    assert len(_queue_ids_html(html)) == 2
    assert re.search(r'id="queue-count"[^>]*>5</span>', html)


def _queue_ids_html(html: str) -> list[str]:
    return re.findall(r'<tr class="queue-row[^"]*" data-id="([0-9a-f-]+)"', html)


def test_queue_help_line_lists_the_keyboard_shortcuts(staff_client):
    html = staff_client.get(INDEX).content.decode()
    help_line = html[html.index('id="help"') :]
    help_line = help_line[: help_line.index("</p>")]
    for key, action in (
        ("j", "move"),
        ("c", "confirm"),
        ("d", "dismiss"),
        ("o", "open detail"),
        ("/", "focus filter"),
    ):
        assert f"<kbd>{key}</kbd>" in help_line and action in help_line


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("tags=asn_change", {"asn"}),
        ("tags=asn_change,impossible_travel", {"asn", "travel", "gb", "critical", "pay"}),
        ("severity=critical", {"critical"}),
        ("review_status=confirmed", {"confirmed"}),
        ("review_status=any", {"asn", "travel", "gb", "critical", "pay", "confirmed"}),
        ("type=PAYMENT", {"pay"}),
        ("country=gb", {"gb"}),
        ("username=asn", {"asn"}),
        ("user=asn", {"asn"}),
        ("tag=asn_change", {"asn"}),
        ("severity=critical&country=FR", set()),
    ],
)
def test_queue_filters(staff_client, query, expected):
    ids = {
        "asn": flagged(NOW, username="asn", tag="asn_change", **PARIS),
        "travel": flagged(NOW - timedelta(minutes=1), username="travel", **LAGOS),
        "gb": flagged(NOW - timedelta(minutes=2), username="gb", **LONDON),
        "critical": flagged(
            NOW - timedelta(minutes=3), username="critical", severity="critical", **LAGOS
        ),
        "pay": flagged(NOW - timedelta(minutes=4), username="pay", type="PAYMENT", **LAGOS),
        "confirmed": flagged(
            NOW - timedelta(minutes=5), username="confirmed", review_status="confirmed", **LAGOS
        ),
    }
    response = staff_client.get(f"{INDEX}?{query}")
    assert response.status_code == 200
    names = {name for name, act in ids.items() if str(act.pk) in _queue_ids(response)}
    assert names == expected


def test_queue_filter_by_user_id(staff_client, django_user_model):
    owner = django_user_model.objects.create_user("owner", password="pw")
    mine = flagged(NOW, user=owner, username="owner")
    flagged(NOW, username="someone")
    response = staff_client.get(f"{INDEX}?user={owner.pk}")
    assert _queue_ids(response) == [str(mine.pk)]


def test_bad_filter_is_named_and_the_others_still_apply(staff_client):
    gb = flagged(NOW, username="gb", **LONDON)
    flagged(NOW, username="ng", **LAGOS)
    response = staff_client.get(f"{INDEX}?severity=apocalyptic&country=GB")
    assert response.status_code == 400
    html = response.content.decode()
    assert "<strong>severity</strong>" in html and "Severity must be one of" in html
    assert _queue_ids(response) == [str(gb.pk)]


def test_bad_feed_and_chart_parameters_are_json_400(staff_client):
    response = staff_client.get(FEED + "?country=Britain")
    assert response.status_code == 400
    assert "country" in response.json()["errors"]
    response = staff_client.get(FEED + "?after=yesterday")
    assert response.status_code == 400
    assert "after" in response.json()["errors"]
    response = staff_client.get(CHARTS + "?since=last-tuesday")
    assert response.status_code == 400
    assert "since" in response.json()["errors"]


@override_settings(TRACKING_DASHBOARD_PAGE_SIZE=2)
def test_queue_pages_older_items_by_cursor(staff_client):
    acts = [flagged(NOW - timedelta(minutes=i), username=f"u{i}") for i in range(5)]
    first = staff_client.get(INDEX)
    assert _queue_ids(first) == [str(a.pk) for a in acts[:2]]
    older = re.search(r'id="queue-older" href="([^"]+)"', first.content.decode()).group(1)
    second = staff_client.get(INDEX + older.replace("&amp;", "&"))
    assert _queue_ids(second) == [str(a.pk) for a in acts[2:4]]


def test_empty_dashboard_renders(staff_client):
    response = staff_client.get(INDEX)
    assert response.status_code == 200
    assert b"No flagged activity matches these filters." in response.content
    assert staff_client.get(FEED).json()["activities"] == []
    data = staff_client.get(CHARTS).json()
    assert data["per_hour"] == [] and data["counts"] == {"total": 0, "flagged": 0}


# ----------------------------------------------------------------------------- detail


def test_detail_timeline_has_distance_and_speed(staff_client):
    home = make_activity(timestamp=NOW - timedelta(hours=3), username="dave", **LONDON)
    trip = make_activity(timestamp=NOW - timedelta(hours=2), username="dave", **PARIS)
    unlocated = make_activity(
        timestamp=NOW - timedelta(minutes=90),
        username="dave",
        ip_address=None,
        city="",
        country="",
        latitude=None,
        longitude=None,
    )
    jump = flagged(NOW - timedelta(hours=1, minutes=18), username="dave", **LAGOS)
    after = make_activity(timestamp=NOW, username="dave", **LAGOS)
    make_activity(timestamp=NOW - timedelta(hours=1), username="erin", **LONDON)  # someone else

    html = staff_client.get(reverse("tracking:dashboard:activity", args=[jump.pk])).content.decode()
    section = html[html.index('id="timeline"') : html.index('id="findings"')]
    rows = section.split("<tr")[2:]  # skip the header row
    assert len(rows) == 5
    assert [
        str(a.pk) in row for a, row in zip([home, trip, unlocated, jump, after], rows, strict=True)
    ]
    assert "current" in rows[3]
    london_paris = haversine_km(51.5074, -0.1278, 48.8566, 2.3522)
    assert 340 < london_paris < 345
    assert f"{london_paris:,.0f} km" in rows[1] and "60 min" in rows[1]
    assert f"{london_paris:,.0f} km/h" in rows[1]
    # The unlocated event has no leg; Lagos is measured from Paris, 42 minutes later.
    assert rows[2].count("—") >= 4
    paris_lagos = haversine_km(48.8566, 2.3522, 6.5244, 3.3792)
    assert f"{paris_lagos:,.0f} km" in rows[3] and "42 min" in rows[3]
    assert f"{paris_lagos / 0.7:,.0f} km/h" in rows[3]
    assert "Paris, FR" in rows[3]
    assert "erin" not in section


def test_detail_shows_findings_evidence_request_data_and_history(staff_client, staff_user):
    act = flagged(
        NOW,
        username="frank",
        reason="London → Lagos, 4,980 km in 42 min = 7,100 km/h",
        headers={"User-Agent": "curl/8", "Authorization": "Bearer abc.def"},
        params={"query": {"q": "report"}, "body": {"password": "hunter2", "amount": 12}},
        **LAGOS,
    )
    Review.objects.create(
        activity_id=act.pk,
        action="flag",
        reviewer=staff_user,
        reviewer_username="staff",
        note="looks odd",
    )
    html = staff_client.get(reverse("tracking:dashboard:activity", args=[act.pk])).content.decode()
    assert "London → Lagos, 4,980 km in 42 min = 7,100 km/h" in html
    assert "&quot;speed_kmh&quot;: 7100" in html  # evidence, pretty JSON, escaped
    assert "curl/8" in html and "&quot;amount&quot;: 12" in html
    assert "hunter2" not in html and "Bearer abc.def" not in html
    assert "[REDACTED]" in html
    history = html[html.index('id="history"') :]
    assert "Flagged" in history and "staff" in history and "looks odd" in history
    assert f'data-flag-url="/api/tracking/activities/{act.pk}/flag/"' in html


def test_detail_shows_which_features_drove_the_risk_score(staff_client):
    act = make_activity(timestamp=NOW, username="gina", flagged=True, risk_score=0.95, **LAGOS)
    Finding.objects.create(
        activity=act,
        timestamp=act.timestamp,
        detector="risk",
        tag="risky_login",
        score=0.95,
        severity="high",
        reason="Login risk 0.95 (Freeman): unusual asn, unusual country",
        evidence={
            "log_risk": 6.1,
            "drivers": ["asn", "country"],
            "features": {
                "browser": {"value": "Firefox", "user_count": 30, "log_ratio": -0.4},
                "country": {"value": "NG", "user_count": 0, "log_ratio": 2.2},
                "asn": {"value": 64680, "user_count": 0, "log_ratio": 3.1},
            },
        },
    )
    html = staff_client.get(reverse("tracking:dashboard:activity", args=[act.pk])).content.decode()
    table = html[html.index('<table class="features">') :]
    table = table[: table.index("</table>")]
    assert "<th>value</th><th>log_ratio</th><th>user_count</th>" in table
    rows = table.split('<tr class="')[1:]
    assert [r.split('scope="row">')[1].split(" ")[0].split("<")[0] for r in rows] == [
        "asn",
        "country",
        "browser",
    ]
    assert rows[0].startswith("driver") and rows[2].startswith('"')
    assert "<td>64680</td><td>3.1</td><td>0</td>" in rows[0]
    assert "<td>Firefox</td><td>-0.4</td><td>30</td>" in rows[2]


def test_detail_of_unknown_activity_is_404(staff_client):
    response = staff_client.get(
        reverse("tracking:dashboard:activity", args=["8f14e45f-ceea-467f-a0e6-3b8b7c1d2e3f"])
    )
    assert response.status_code == 404
    assert response["Content-Security-Policy"] == POLICY


def test_legs_handle_zero_gap_and_same_place():
    a = Activity(timestamp=NOW, **LONDON)
    b = Activity(timestamp=NOW, **LAGOS)
    c = Activity(timestamp=NOW + timedelta(hours=1), **LAGOS)
    first, zero, same = legs([a, b, c])
    assert first is None
    assert zero.speed_kmh is None and zero.speed_text == "instant"
    assert same.distance_km == 0 and same.speed_kmh == 0 and same.speed_text == "0 km/h"
    assert zero.radius_km == 30 and not zero.within_accuracy  # London-Lagos is far beyond 30 km


def test_legs_flag_moves_within_the_accuracy_radius():
    # A phone whose carrier geolocates it to the capital (±400 km), then Wi-Fi nearby or far.
    capital = Activity(timestamp=NOW, latitude=52.52, longitude=13.405, accuracy_radius=400)
    munich = Activity(
        timestamp=NOW + timedelta(minutes=5), latitude=48.1351, longitude=11.582, accuracy_radius=5
    )
    potsdam = Activity(
        timestamp=NOW + timedelta(minutes=5), latitude=52.3906, longitude=13.0645, accuracy_radius=5
    )
    _, far = legs([capital, munich])
    assert 500 < far.distance_km < 510 and far.radius_km == 405 and not far.within_accuracy
    _, near = legs([capital, potsdam])
    assert near.distance_km < 30 and near.within_accuracy


def test_detail_says_when_a_move_is_within_the_accuracy_radius(staff_client):
    make_activity(
        timestamp=NOW - timedelta(minutes=5),
        username="ivy",
        city="Berlin",
        country="DE",
        latitude=52.52,
        longitude=13.405,
        accuracy_radius=400,
    )
    act = make_activity(
        timestamp=NOW,
        username="ivy",
        city="Potsdam",
        country="DE",
        latitude=52.3906,
        longitude=13.0645,
        accuracy_radius=5,
    )
    html = staff_client.get(reverse("tracking:dashboard:activity", args=[act.pk])).content.decode()
    current = html[html.index('<tr class="current') :]
    current = current[: current.index("</tr>")]
    assert "within ±405 km accuracy" in current and "Berlin, DE" in current


# ----------------------------------------------------------------------------- escaping


def test_payloads_in_free_text_fields_render_inert(staff_client, staff_user):
    act = flagged(
        NOW,
        username=XSS,
        reason=IMG,
        endpoint=f"/search/?q={SQL}",
        city=IMG,
        isp=XSS,
        user_agent=IMG,
        device=XSS,
        headers={"X-Evil": XSS},
        params={"q": SQL},
    )
    Review.objects.create(activity_id=act.pk, action="flag", reviewer_username=XSS, note=IMG)
    for url in (INDEX, reverse("tracking:dashboard:activity", args=[act.pk])):
        html = staff_client.get(url).content.decode()
        assert "<script>alert" not in html, url
        assert "<img src=x" not in html, url
        assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html, url
        assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html, url
    # The SQL text is data: it was stored and read back verbatim, the table is still there.
    assert Activity.objects.filter(pk=act.pk).exists()
    feed = staff_client.get(FEED).json()
    assert feed["activities"][-1]["username"] == XSS
    assert feed["activities"][-1]["reasons"] == [IMG]


# ----------------------------------------------------------------------------- live feed


def test_feed_first_poll_then_only_new_activity(staff_client):
    old = make_activity(timestamp=NOW - timedelta(minutes=10), username="old")
    first = staff_client.get(FEED).json()
    assert [a["id"] for a in first["activities"]] == [str(old.pk)]
    cursor = parse_cursor(first["cursor"])
    assert cursor.timestamp == old.timestamp and cursor.activity_id == str(old.pk)

    new = flagged(NOW, username="mallory", reason="London → Lagos at 7,100 km/h", **LAGOS)
    second = staff_client.get(FEED, {"after": first["cursor"]}).json()
    assert [a["id"] for a in second["activities"]] == [str(new.pk)]
    item = second["activities"][0]
    assert item["flagged"] is True and item["queue"] is True
    assert item["reasons"] == ["London → Lagos at 7,100 km/h"]
    assert item["city"] == "Lagos" and item["network"] == "AS64680 Eko Broadband"
    assert item["url"] == reverse("tracking:dashboard:activity", args=[new.pk])

    third = staff_client.get(FEED, {"after": second["cursor"]}).json()
    assert third["activities"] == []
    assert third["cursor"] == second["cursor"]


def test_feed_looks_back_for_rows_committed_late(staff_client):
    newest = make_activity(timestamp=NOW, username="a")
    cursor = staff_client.get(FEED).json()["cursor"]
    late = make_activity(timestamp=NOW - timedelta(seconds=50), username="late")
    too_late = make_activity(timestamp=NOW - timedelta(seconds=300), username="ancient")
    ids = {a["id"] for a in staff_client.get(FEED, {"after": cursor}).json()["activities"]}
    assert ids == {str(late.pk)}  # not the cursor's own row, nor what is older than the lag
    assert str(newest.pk) not in ids and str(too_late.pk) not in ids


def test_feed_quiet_poll_with_known_count_returns_nothing(staff_client):
    for i in range(3):
        make_activity(timestamp=NOW - timedelta(seconds=10 * i))
    make_activity(timestamp=NOW - timedelta(hours=1))
    first = staff_client.get(FEED).json()
    start = first["window_start"]
    assert start == (NOW - timedelta(seconds=120)).isoformat(timespec="microseconds")
    held = [a for a in first["activities"] if a["timestamp"] > start]
    assert len(held) == 3  # what the page counts as "known"
    quiet = staff_client.get(FEED, {"after": first["cursor"], "known": 3}).json()
    assert quiet["activities"] == [] and quiet["cursor"] == first["cursor"]

    # A row committed late (stamped 40 s before the newest) changes the count: it is sent.
    late = make_activity(timestamp=NOW - timedelta(seconds=40), username="late")
    data = staff_client.get(FEED, {"after": first["cursor"], "known": 3}).json()
    ids = [a["id"] for a in data["activities"]]
    assert str(late.pk) in ids and len(ids) == 4  # the window again; the page drops the rest
    assert data["cursor"] == first["cursor"]  # still the newest row
    data = staff_client.get(FEED, {"after": data["cursor"], "known": 4}).json()
    assert data["activities"] == []


def test_feed_known_must_be_a_count(staff_client):
    make_activity(timestamp=NOW)
    cursor = staff_client.get(FEED).json()["cursor"]
    response = staff_client.get(FEED, {"after": cursor, "known": "-1"})
    assert response.status_code == 400 and "known" in response.json()["errors"]


def test_feed_marks_queue_membership_by_the_page_filters(staff_client):
    cursor = staff_client.get(FEED).json()["cursor"]
    gb = flagged(NOW, username="gb", **LONDON)
    ng = flagged(NOW, username="ng", **LAGOS)
    plain = make_activity(timestamp=NOW, username="plain", flagged=False)
    items = {
        a["id"]: a
        for a in staff_client.get(FEED, {"after": cursor, "country": "NG"}).json()["activities"]
    }
    assert items[str(ng.pk)]["queue"] is True
    assert items[str(gb.pk)]["queue"] is False  # in the feed, not in this queue view
    assert items[str(plain.pk)]["queue"] is False


def test_feed_brings_in_activities_flagged_by_a_reviewer(staff_client):
    old = make_activity(timestamp=NOW - timedelta(days=3), username="victim", flagged=False)
    make_activity(timestamp=NOW, username="recent")
    cursor = staff_client.get(FEED).json()["cursor"]
    Activity.objects.filter(pk=old.pk).update(flagged=True)
    Review.objects.create(activity_id=old.pk, action="flag", reviewer_username="staff")
    data = staff_client.get(FEED, {"after": cursor}).json()
    item = next(a for a in data["activities"] if a["id"] == str(old.pk))
    assert item["flagged"] is True and item["flagged_by"] == "staff"
    # The cursor stays at the newest activity, not the old flagged one.
    assert parse_cursor(data["cursor"]).timestamp >= parse_cursor(cursor).timestamp
    again = staff_client.get(FEED, {"after": data["cursor"]}).json()
    assert str(old.pk) not in {a["id"] for a in again["activities"]}


def test_feed_is_bounded(staff_client):
    for i in range(8):
        make_activity(timestamp=NOW - timedelta(seconds=i))
    with override_settings(TRACKING_DASHBOARD_FEED_SIZE=3):
        data = staff_client.get(FEED).json()
    assert len(data["activities"]) == 3
    stamps = [a["timestamp"] for a in data["activities"]]
    assert stamps == sorted(stamps)  # oldest first, the newest three


# ----------------------------------------------------------------------------- charts


def test_chart_data_series_tops_detectors_and_percentiles(staff_client):
    for i in range(100):
        make_activity(
            timestamp=NOW - timedelta(minutes=i),
            duration=float(i + 1),
            type="AUTH" if i % 4 else "PAYMENT",
            **(LONDON if i % 2 else PARIS),
        )
    flagged(NOW - timedelta(hours=5), tag="asn_change", duration=None, **LAGOS)
    flagged(NOW - timedelta(days=2), tag="impossible_travel", duration=None, **LAGOS)
    data = staff_client.get(CHARTS).json()

    assert data["counts"] == {"total": 102, "flagged": 2}
    assert len(data["per_hour"]) == 48 and len(data["per_day"]) == 30
    assert sum(b["count"] for b in data["per_hour"]) == 101  # the 2-day-old one is outside 48 h
    assert sum(b["count"] for b in data["per_day"]) == 102
    assert sum(b["flagged"] for b in data["per_day"]) == 2
    assert data["per_hour"][-1]["bucket"].startswith("2026-03-02T12:00")
    assert {t["type"]: t["count"] for t in data["types"]} == {"AUTH": 77, "PAYMENT": 25}
    assert data["countries"][0] == {"country": "FR", "count": 50, "flagged": 0}
    assert {c["country"] for c in data["countries"]} == {"GB", "FR", "NG"}
    networks = {n["label"]: n for n in data["networks"]}
    assert networks["AS64680 Eko Broadband"]["flagged"] == 2
    assert {d["detector"]: d["count"] for d in data["detectors"]} == {
        "asn_change": 1,
        "impossible_travel": 1,
    }
    assert data["response_times"] == {"p50": 50.0, "p95": 95.0, "p99": 99.0, "count": 100}


def test_chart_data_respects_filters(staff_client):
    make_activity(timestamp=NOW, duration=10.0, **LONDON)
    make_activity(timestamp=NOW, duration=20.0, **LONDON)
    make_activity(timestamp=NOW, duration=500.0, **LAGOS)
    flagged(NOW, duration=900.0, **LAGOS)
    data = staff_client.get(CHARTS, {"country": "GB"}).json()
    assert data["counts"]["total"] == 2
    assert [c["country"] for c in data["countries"]] == ["GB"]
    assert data["response_times"]["p99"] == 20.0
    data = staff_client.get(CHARTS, {"tags": "impossible_travel"}).json()
    assert data["counts"] == {"total": 1, "flagged": 1}
    assert data["detectors"] == [{"detector": "impossible_travel", "count": 1, "flagged": 1}]


def test_chart_window_follows_the_data_not_the_clock(staff_client):
    past = datetime(2024, 6, 1, 9, 30, tzinfo=UTC)
    make_activity(timestamp=past)
    data = staff_client.get(CHARTS).json()
    assert data["window"]["latest"].startswith("2024-06-01T09:30")
    assert data["per_hour"][-1] == {"bucket": "2024-06-01T09:00:00+00:00", "count": 1, "flagged": 0}


# ----------------------------------------------------------------------------- admin link and checks


def test_admin_index_links_to_the_dashboard(staff_client, client, django_user_model):
    html = staff_client.get(reverse("admin:index")).content.decode()
    assert '<a href="/api/tracking/dashboard/">Security dashboard</a>' in html
    client.force_login(django_user_model.objects.create_superuser("root", "r@example.com", "pw"))
    html = client.get(reverse("admin:index")).content.decode()
    assert '<a href="/api/tracking/dashboard/">Security dashboard</a>' in html
    assert 'id="content-main"' in html and "app-auth" in html  # the normal index is intact
    assert "Recent actions" in html


def test_admin_index_hides_the_link_without_the_permission(client, django_user_model):
    user = django_user_model.objects.create_user("clerk", password="pw", is_staff=True)
    client.force_login(user)
    response = client.get(reverse("admin:index"))
    assert response.status_code == 200
    assert "Security dashboard" not in response.content.decode()


def _ids(messages) -> list[str]:
    return [m.id for m in messages]


def test_checks_pass_with_defaults():
    assert dashboard_messages() == []


@pytest.mark.parametrize("value", [0, 5, "1", None, True])
def test_check_poll_interval(value):
    with override_settings(TRACKING_DASHBOARD_POLL_INTERVAL=value):
        messages = dashboard_messages()
    assert _ids(messages) == ["tracking.E090"]
    assert "TRACKING_DASHBOARD_POLL_INTERVAL" in messages[0].msg


@pytest.mark.parametrize(
    "name", ["DASHBOARD_FEED_SIZE", "DASHBOARD_PAGE_SIZE", "DASHBOARD_TIMELINE_SIZE"]
)
@pytest.mark.parametrize("value", [0, -1, 10_000, 2.5, "10"])
def test_check_sizes(name, value):
    with override_settings(**{f"TRACKING_{name}": value}):
        messages = dashboard_messages()
    assert _ids(messages) == ["tracking.E091"]
    assert f"TRACKING_{name}" in messages[0].msg


def test_check_feed_lag_and_staticfiles():
    with override_settings(TRACKING_DASHBOARD_FEED_LAG=-1):
        assert _ids(dashboard_messages()) == ["tracking.E092"]
    from django.conf import settings

    apps_without_static = [a for a in settings.INSTALLED_APPS if a != "django.contrib.staticfiles"]
    with override_settings(INSTALLED_APPS=apps_without_static):
        messages = dashboard_messages()
    assert _ids(messages) == ["tracking.W090"]
    assert messages[0].level == checks.WARNING


def test_checks_are_registered():
    from django.core.checks import run_checks

    with override_settings(TRACKING_DASHBOARD_POLL_INTERVAL=60):
        assert "tracking.E090" in _ids(run_checks())


def test_viewer_without_review_permission_gets_disabled_buttons(client, django_user_model):
    viewer = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_activity"))
    client.force_login(viewer)
    flagged(NOW)
    html = client.get(INDEX).content.decode()
    assert 'data-can-review="false"' in html
    assert html.count('data-status="dismissed" disabled') == 1
    assert html.count('data-status="confirmed" disabled') == 1


def test_detail_survives_values_it_cannot_decrypt(staff_client):
    act = flagged(NOW, headers={"Accept": "text/html"}, params={"q": "x"})
    other_key = "b3RoZXIta2V5LW5vdC10aGUtb25lLXVzZWQtMDAwMDA="
    with override_settings(TRACKING_ENCRYPTION_KEYS=[other_key]):
        response = staff_client.get(reverse("tracking:dashboard:activity", args=[act.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Cannot decrypt headers" in html and "Cannot decrypt params" in html
    assert "impossible_travel reason for alice" in html  # the rest of the page is intact


def test_timeline_of_an_anonymous_session(staff_client):
    session = "a" * 64
    first = make_activity(timestamp=NOW - timedelta(minutes=3), username="", session_id=session)
    second = make_activity(timestamp=NOW, username="", session_id=session)
    make_activity(timestamp=NOW - timedelta(minutes=1), username="", session_id="b" * 64)
    html = staff_client.get(
        reverse("tracking:dashboard:activity", args=[second.pk])
    ).content.decode()
    section = html[html.index('id="timeline"') : html.index('id="findings"')]
    assert section.count("<tr") == 3  # header + the session's two activities
    assert str(first.pk) in section


def test_bad_queue_cursor_is_reported_and_the_first_page_shown(staff_client):
    act = flagged(NOW)
    response = staff_client.get(INDEX, {"before": "nonsense|x"})
    assert response.status_code == 400
    assert "<strong>before</strong>" in response.content.decode()
    assert _queue_ids(response) == [str(act.pk)]


def test_feed_accepts_a_bare_timestamp_cursor(staff_client, staff_user):
    old = make_activity(timestamp=NOW - timedelta(minutes=10), username="old")
    new = make_activity(timestamp=NOW, username="new")
    reviewed = make_activity(timestamp=NOW - timedelta(days=2), username="reviewed")
    Review.objects.create(activity_id=reviewed.pk, action="flag", reviewer_username="staff")
    since = (NOW - timedelta(minutes=5)).isoformat()  # "+00:00" arrives as " 00:00" unquoted
    data = staff_client.get(FEED + "?after=" + since).json()
    ids = {a["id"] for a in data["activities"]}
    assert str(new.pk) in ids and str(reviewed.pk) in ids and str(old.pk) not in ids
    assert parse_cursor(data["cursor"]).activity_id == str(new.pk)
    assert staff_client.get(FEED, {"after": "a|b|c|d"}).status_code == 400
    assert staff_client.get(FEED, {"after": f"{since}||-3"}).status_code == 400


def test_export_link_carries_the_filters_for_exporters(staff_client, client, django_user_model):
    html = staff_client.get(
        INDEX, {"country": "GB", "severity": "high", "review_status": "any"}
    ).content.decode()
    href = re.search(r'id="export-link" href="([^"]+)"', html).group(1).replace("&amp;", "&")
    assert href.startswith("/api/tracking/activities/export/?format=csv&")
    assert "country=GB" in href and "severity=high" in href and "review_status" not in href
    gb = flagged(NOW, username="gb", **LONDON)
    flagged(NOW, username="ng", **LAGOS)
    response = staff_client.get(href)  # the API accepts the page's filters as they are
    assert response.status_code == 200
    body = b"".join(response.streaming_content).decode()
    rows = [line for line in body.splitlines() if line]
    assert len(rows) == 2 and str(gb.pk) in rows[1]  # header + the one GB activity
    viewer = django_user_model.objects.create_user("viewer2", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_activity"))
    client.force_login(viewer)
    assert 'id="export-link"' not in client.get(INDEX).content.decode()


def test_dashboard_endpoints_are_read_only(staff_client):
    for url in (
        INDEX,
        FEED,
        CHARTS,
        reverse("tracking:dashboard:activity", args=[NOW.isoformat()]),
    ):
        for method in (staff_client.post, staff_client.put, staff_client.delete):
            response = method(url)
            assert response.status_code == 405, (url, method)
            assert response["Content-Security-Policy"] == POLICY
    assert staff_client.head(INDEX).status_code == 200


def test_outcome_is_shown_in_queue_feed_and_detail(staff_client):
    act = flagged(NOW, tag="credential_stuffing", status=200, outcome="failure", **LONDON)
    queue = staff_client.get(INDEX).content.decode()
    assert 'class="outcome outcome-failure">failure<' in queue
    detail = staff_client.get(reverse("tracking:dashboard:activity", args=[act.pk]))
    assert 'class="outcome outcome-failure">failure<' in detail.content.decode()
    (item,) = [i for i in staff_client.get(FEED).json()["activities"] if i["id"] == str(act.pk)]
    assert item["outcome"] == "failure"
