"""The admin at /admin/tracking/activity/: renders for staff, refuses others, read-only,
actions through the review path, payloads escaped, no full count."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.test import Client, override_settings

from tracking.models import Activity, Finding, Review, Tombstone
from tracking.testing.factories import make_activities, make_activity

pytestmark = pytest.mark.django_db
LIST = "/admin/tracking/activity/"


@pytest.fixture
def admin_client_staff(staff_user):
    client = Client()
    client.force_login(staff_user)
    return client


def change_url(pk):
    return f"{LIST}{pk}/change/"


def test_changelist_renders_with_columns_and_filters(admin_client_staff):
    a = make_activity(
        username="alice",
        country="GB",
        city="London",
        endpoint="/api/auth/login/",
        tags=["new_device"],
        flagged=True,
    )
    Finding.objects.create(
        activity_id=a.pk,
        timestamp=a.timestamp,
        detector="device",
        tag="new_device",
        score=0.6,
        reason="first time on this device",
    )
    resp = admin_client_staff.get(LIST)
    assert resp.status_code == 200
    html = resp.content.decode()
    for text in (
        "alice",
        "GB / London",
        "/api/auth/login/",
        "new_device",
        "Flag selected activities",
        "Dismiss selected",
    ):
        assert text in html, text
    for param in (
        "?type=AUTH",
        "?country=GB",
        "?flagged__exact=1",
        "?review_status__exact=open",
        "?tag=new_device",
    ):
        assert param in html, param
    assert admin_client_staff.get(LIST, {"tag": "new_device"}).status_code == 200
    assert admin_client_staff.get(LIST, {"q": "alice"}).status_code == 200
    assert admin_client_staff.get(LIST, {"q": "81.2"}).status_code == 200


def test_filters_and_search_narrow_the_list(admin_client_staff):
    make_activity(username="alice", type="AUTH", country="GB")
    make_activity(username="bob", type="PAYMENT", country="FR")
    html = admin_client_staff.get(LIST, {"type": "PAYMENT"}).content.decode()
    assert "bob" in html and "alice" not in html
    html = admin_client_staff.get(LIST, {"q": "alice"}).content.decode()
    assert "alice" in html and ">bob<" not in html


def test_changelist_refuses_non_staff_and_anonymous(plain_user):
    make_activity()
    assert Client().get(LIST).status_code == 302  # to the login page
    c = Client()
    plain_user.user_permissions.set(Permission.objects.filter(content_type__app_label="tracking"))
    c.force_login(plain_user)
    resp = c.get(LIST)
    assert resp.status_code == 302 and "/login/" in resp["Location"]


def test_staff_without_view_permission_is_refused(django_user_model):
    user = django_user_model.objects.create_user("s", password="pw", is_staff=True)
    c = Client()
    c.force_login(user)
    assert c.get(LIST).status_code == 403


def test_detail_is_read_only_and_escapes_payloads(admin_client_staff):
    payload = "<script>alert('x')</script>' OR 1=1 --"
    a = make_activity(
        headers={"User-Agent": payload, "Authorization": "Bearer secret-value"},
        params={"q": payload},
        username="<b>mallory</b>",
    )
    Finding.objects.create(
        activity_id=a.pk,
        timestamp=a.timestamp,
        detector="rule",
        tag="sqli",
        score=0.8,
        reason=payload,
        evidence={"p": payload},
    )
    resp = admin_client_staff.get(change_url(a.pk))
    assert resp.status_code == 200
    html = resp.content.decode()
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(" in html
    assert "<b>mallory</b>" not in html
    assert "secret-value" not in html  # redacted again on output
    assert "sqli" in html
    assert 'name="_save"' not in html  # no save button: read-only
    before = Activity.objects.get(pk=a.pk)
    resp = admin_client_staff.post(change_url(a.pk), {"username": "changed", "flagged": "on"})
    assert resp.status_code == 403
    after = Activity.objects.get(pk=a.pk)
    assert (after.username, after.flagged, after.mac) == (
        before.username,
        before.flagged,
        before.mac,
    )


def test_no_add_and_no_plain_delete(admin_client_staff):
    a = make_activity()
    assert admin_client_staff.get(f"{LIST}add/").status_code == 403
    assert admin_client_staff.post(f"{LIST}{a.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Activity.objects.filter(pk=a.pk).exists()


@pytest.mark.parametrize(
    "action, check",
    [
        ("flag", lambda a: a.flagged),
        ("unflag", lambda a: not a.flagged),
        ("confirm", lambda a: a.review_status == "confirmed"),
        ("dismiss", lambda a: a.review_status == "dismissed"),
    ],
)
def test_review_actions_go_through_the_review_path(admin_client_staff, staff_user, action, check):
    rows = make_activities(3, flagged=(action == "unflag"))
    resp = admin_client_staff.post(
        LIST, {"action": action, "_selected_action": [str(r.pk) for r in rows[:2]]}
    )
    assert resp.status_code == 302
    changed = Activity.objects.filter(pk__in=[r.pk for r in rows[:2]])
    assert all(check(a) for a in changed)
    assert all(a.reviewed_by_id == staff_user.pk for a in changed)
    assert not check(Activity.objects.get(pk=rows[2].pk))
    expected = {"flag": "flag", "unflag": "unflag", "confirm": "confirmed", "dismiss": "dismissed"}[
        action
    ]
    assert Review.objects.filter(action=expected, reviewer=staff_user).count() == 2


def test_actions_need_the_review_permission(django_user_model):
    user = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename="view_activity"))
    c = Client()
    c.force_login(user)
    a = make_activity()
    html = c.get(LIST).content.decode()
    assert "Flag selected" not in html
    c.post(LIST, {"action": "flag", "_selected_action": [str(a.pk)]})
    assert not Activity.objects.get(pk=a.pk).flagged
    assert not Review.objects.exists()


def test_delete_action_writes_tombstones(admin_client_staff):
    rows = make_activities(2)
    admin_client_staff.post(
        LIST, {"action": "delete_with_tombstone", "_selected_action": [str(rows[0].pk)]}
    )
    assert not Activity.objects.filter(pk=rows[0].pk).exists()
    assert Tombstone.objects.filter(activity_id=rows[0].pk, reason="admin").exists()
    assert Review.objects.filter(activity_id=rows[0].pk, action="delete").exists()


def test_changelist_never_counts_the_whole_table(admin_client_staff):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    make_activities(30)
    with override_settings(TRACKING_COUNT_LIMIT=10), CaptureQueriesContext(connection) as ctx:
        resp = admin_client_staff.get(LIST)
    assert resp.status_code == 200
    counts = [
        q["sql"]
        for q in ctx.captured_queries
        if "COUNT(" in q["sql"].upper() and "tracking_activity" in q["sql"]
    ]
    assert counts and all("LIMIT 11" in sql for sql in counts), counts


def test_related_admins_are_read_only(admin_client_staff, staff_user):
    a = make_activity()
    from tracking.detection.review import review

    review(a, by=staff_user, flagged=True)
    assert admin_client_staff.get("/admin/tracking/review/").status_code == 200
    assert admin_client_staff.get("/admin/tracking/review/add/").status_code == 403


def test_tag_filter_lists_detector_tags_without_scanning_findings(admin_client_staff):
    from tracking.admin.activity import known_tags
    from tracking.detection.config import pipeline

    expected = {d.tag for d in pipeline().detectors if d.tag}
    assert expected and expected <= known_tags()
    html = admin_client_staff.get(LIST).content.decode()
    tag = sorted(expected)[0]
    assert f"?tag={tag}" in html


def test_date_hierarchy_reads_rollups_not_the_log(admin_client_staff):
    import re
    from datetime import datetime
    from datetime import timezone as dt_timezone

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tracking.storage.stats import rebuild_rollups

    UTC = dt_timezone.utc
    make_activity(timestamp=datetime(2023, 5, 3, 10, tzinfo=UTC))
    make_activity(timestamp=datetime(2024, 2, 7, 10, tzinfo=UTC))
    make_activity(timestamp=datetime(2024, 3, 9, 10, tzinfo=UTC))

    def links(params):
        html = admin_client_staff.get(LIST, params).content.decode()
        return sorted(set(re.findall(r"\?(timestamp__[^\"]+)\"", html)))

    plain = [
        links({}),
        links({"timestamp__year": "2024"}),
        links({"timestamp__year": "2024", "timestamp__month": "2"}),
    ]
    rebuild_rollups()
    with CaptureQueriesContext(connection) as ctx:
        fast = [
            links({}),
            links({"timestamp__year": "2024"}),
            links({"timestamp__year": "2024", "timestamp__month": "2"}),
        ]
    assert fast == plain
    assert "timestamp__year=2023" in plain[0] and "timestamp__year=2024" in plain[0]
    assert any("timestamp__month=3" in link for link in plain[1])
    distinct = [q["sql"] for q in ctx.captured_queries if "DISTINCT" in q["sql"].upper()]
    assert distinct and not any('FROM "tracking_activity"' in sql for sql in distinct), distinct
    # a filter rollups cannot answer (review status): the exact (table) path
    with CaptureQueriesContext(connection) as ctx:
        admin_client_staff.get(LIST, {"review_status__exact": "open"})
    assert any(
        '"tracking_activity"' in q["sql"] and "DISTINCT" in q["sql"].upper()
        for q in ctx.captured_queries
    )


@pytest.mark.parametrize(
    "params",
    [
        {"flagged__exact": "1"},
        {"flagged__exact": "0"},
        {"type": "AUTH"},
        {"country": "fr"},
        {"flagged__exact": "1", "type": "DATA", "timestamp__year": "2024"},
    ],
)
def test_date_hierarchy_with_rollup_filters_matches_the_log(admin_client_staff, params):
    """Type, country and flagged filters are rollup dimensions: the hierarchy's links come
    from rollups and equal those of the DISTINCT over the log."""
    import re
    from datetime import datetime
    from datetime import timezone as dt_timezone

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tracking.storage.stats import rebuild_rollups

    UTC = dt_timezone.utc
    make_activity(timestamp=datetime(2023, 5, 3, 10, tzinfo=UTC), type="AUTH", country="FR")
    make_activity(timestamp=datetime(2024, 2, 7, 10, tzinfo=UTC), type="DATA", flagged=True)
    make_activity(timestamp=datetime(2024, 3, 9, 10, tzinfo=UTC), type="AUTH", country="DE")
    make_activity(timestamp=datetime(2024, 7, 9, 10, tzinfo=UTC), type="DATA", country="FR")

    def links():
        html = admin_client_staff.get(LIST, params).content.decode()
        return sorted(set(re.findall(r"\?([^\"]*timestamp__[^\"]+)\"", html)))

    exact = links()
    rebuild_rollups()
    with CaptureQueriesContext(connection) as ctx:
        fast = links()
    assert fast == exact and exact
    distinct = [q["sql"] for q in ctx.captured_queries if "DISTINCT" in q["sql"].upper()]
    assert not any('FROM "tracking_activity"' in sql for sql in distinct), distinct


def test_outcome_column_filter_and_detail(admin_client_staff):
    failed = make_activity(username="tried", status=200, outcome="failure")
    make_activity(username="fine", status=200)
    body = admin_client_staff.get(LIST + "?outcome=failure").content.decode()
    assert "tried" in body and "fine" not in body and "column-outcome" in body
    detail = admin_client_staff.get(change_url(failed.pk)).content.decode()
    assert "failure" in detail
