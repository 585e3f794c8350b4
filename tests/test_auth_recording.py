"""Every login path of a plain Django site recorded with its outcome (tests/plainsite_urls.py).

The site is what a new user builds: ``django.contrib.auth.urls`` (``LoginView``), the admin and
DRF's ``obtain_auth_token``, ``tracking`` installed with the ``TrackingMiddleware``, behind a
reverse proxy at 10.0.0.2 that appends the client's address to ``X-Forwarded-For``.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth import authenticate
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.http import HttpResponse
from django.test import RequestFactory

from tracking.integrity.macs import is_masked_username, mask_username, row_ok
from tracking.middleware import TrackingMiddleware
from tracking.models import Activity, Profile

pytestmark = pytest.mark.django_db

PROXY = "10.0.0.2"
HOME = "81.2.69.20"  # London, AS64600 (the synthetic GeoIP world)
HOME_2 = "81.2.69.21"
ATTACKER = "95.30.1.7"  # Moscow, AS64690
PASSWORD = "correct-horse-battery"
TEMPLATES = str(Path(__file__).resolve().parent / "templates")


@pytest.fixture(autouse=True)
def plain_site(settings):
    settings.ROOT_URLCONF = "tests.plainsite_urls"
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "tracking.middleware.TrackingMiddleware"]
    settings.TRACKING_AUTH_SIGNALS = True
    settings.TRACKING_TRUSTED_PROXIES = ["10.0.0.0/8"]
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [TEMPLATES]}]


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user("alice", "alice@example.com", PASSWORD)


@pytest.fixture
def boss(django_user_model):
    return django_user_model.objects.create_superuser("boss", "boss@example.com", PASSWORD)


def post(client, path, data, ip, forged=""):
    """A POST through the proxy: it appends the client's address to what the client sent."""
    chain = f"{forged}, {ip}" if forged else ip
    return client.post(path, data, REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=chain)


def auth_rows(**filters):
    return list(Activity.objects.filter(type="AUTH", **filters).order_by("timestamp"))


def test_login_view_outcomes_one_activity_per_request(client, alice):
    assert client.get("/accounts/login/").status_code == 200  # a GET is not recorded
    bad = post(client, "/accounts/login/", {"username": "alice", "password": "nope"}, ATTACKER)
    assert bad.status_code == 200 and b"correct username and password" in bad.content
    ok = post(
        client, "/accounts/login/", {"username": "alice", "password": PASSWORD}, HOME, "6.6.6.6"
    )
    assert ok.status_code == 302
    assert post(client, "/accounts/logout/", {}, HOME).status_code in (200, 302)
    failed, login, logout = auth_rows()
    assert (failed.status, failed.outcome, failed.params["auth_event"]) == (
        200,
        "failure",
        "login_failed",
    )
    # The failed attempt names the account it tried; the password never reaches the log.
    assert failed.username == "alice" and failed.user_id == alice.pk
    assert failed.ip_address == ATTACKER and failed.remote_addr == PROXY
    assert "nope" not in json.dumps(failed.params)
    assert (login.status, login.outcome, login.user_id) == (302, "success", alice.pk)
    # The address the client forged to the left of the proxy's is not believed.
    assert login.ip_address == HOME and login.forwarded_for == f"6.6.6.6, {HOME}"
    assert login.country == "GB" and len(login.session_id) == 64
    assert (logout.outcome, logout.user_id, logout.params["auth_event"]) == (
        "success",
        alice.pk,
        "logout",
    )
    assert all(row_ok(r) for r in (failed, login, logout))


def test_admin_login_outcomes(client, boss):
    data = {"username": "boss", "password": "wrong", "next": "/admin/"}
    assert post(client, "/admin/login/", data, ATTACKER).status_code == 200
    data["password"] = PASSWORD
    assert post(client, "/admin/login/", data, HOME).status_code == 302
    failed, ok = auth_rows(endpoint="/admin/login/")
    assert (failed.status, failed.outcome, failed.user_id) == (200, "failure", boss.pk)
    assert (ok.status, ok.outcome, ok.user_id) == (302, "success", boss.pk)
    assert Activity.objects.count() == 2


def test_admin_login_refusing_a_valid_non_staff_account_is_a_failure(client, alice):
    """Django's admin answers a right password of a non-staff account with its form and an
    error, and sends no auth signal (the credentials were valid): still a failed login."""
    data = {"username": "alice", "password": PASSWORD, "next": "/admin/"}
    response = post(client, "/admin/login/", data, ATTACKER)
    assert response.status_code == 200 and "_auth_user_id" not in client.session
    (row,) = auth_rows(endpoint="/admin/login/")
    assert (row.status, row.outcome) == (200, "failure")


def test_token_view_outcomes(client, alice):
    bad = post(client, "/api-token-auth/", {"username": "alice", "password": "nope"}, ATTACKER)
    assert bad.status_code == 400
    good = post(client, "/api-token-auth/", {"username": "alice", "password": PASSWORD}, HOME)
    assert good.status_code == 200 and good.json()["token"]
    failed, ok = auth_rows(endpoint="/api-token-auth/")
    assert (failed.status, failed.outcome, failed.user_id) == (400, "failure", alice.pk)
    assert (ok.status, ok.outcome, ok.user_id) == (200, "success", alice.pk)
    assert good.json()["token"] not in json.dumps(ok.params)


def test_a_tracked_login_view_gives_one_activity(client, alice):
    """``@track`` on LoginView, under the middleware whose paths match it too: one activity,
    its outcome from the signal although the status is 200."""
    post(client, "/tracked/login/", {"username": "alice", "password": "nope"}, ATTACKER)
    post(client, "/tracked/login/", {"username": "alice", "password": PASSWORD}, HOME)
    assert [(r.status, r.outcome) for r in auth_rows()] == [(200, "failure"), (302, "success")]


def test_unknown_names_are_masked_but_still_countable(client):
    for name in ("n0body", "n0body", "hunter2-typed-as-username"):
        post(client, "/accounts/login/", {"username": name, "password": "x"}, ATTACKER)
    first, second, third = auth_rows()
    assert first.username == second.username == mask_username("n0body")
    assert is_masked_username(third.username) and third.username != first.username
    assert "hunter2" not in third.username and "hunter2" not in json.dumps(third.params)
    assert first.user_id is None and first.outcome == "failure"


def test_a_failed_login_without_a_request_is_recorded():
    assert authenticate(username="ghost", password="x") is None
    (row,) = auth_rows()
    assert row.outcome == "failure" and row.ip_address is None and row.status is None
    assert row.username == mask_username("ghost") and row.params["auth_event"] == "login_failed"


def test_auth_signals_setting_turns_recording_off(client, alice, settings):
    settings.TRACKING_AUTH_SIGNALS = False
    authenticate(username="alice", password="nope")
    assert not Activity.objects.exists()


def test_credential_stuffing_through_login_view_is_flagged(client, django_user_model):
    for i in range(5):
        django_user_model.objects.create_user(f"user{i}", password=PASSWORD)
    names = [f"user{i}" for i in range(5)] + [f"leaked{i}" for i in range(5)]
    for name in names:
        resp = post(client, "/accounts/login/", {"username": name, "password": "x"}, ATTACKER)
        assert resp.status_code == 200  # a form error, never a 4xx
    rows = auth_rows()
    assert len(rows) == len(names) and {r.outcome for r in rows} == {"failure"}
    assert not rows[1].flagged  # two accounts are not a pattern yet
    assert all("credential_stuffing" in r.tags and r.flagged for r in rows[2:])
    # Accounts that exist were tried, not compromised: no profile learned anything.
    assert not Profile.objects.filter(events__gt=0).exists()


def test_brute_force_through_admin_login_is_flagged(client, boss):
    for _ in range(6):
        data = {"username": "boss", "password": "guess", "next": "/admin/"}
        assert post(client, "/admin/login/", data, ATTACKER).status_code == 200
    rows = auth_rows()
    assert "brute_force" in rows[-1].tags and rows[-1].flagged
    assert "brute_force" not in rows[0].tags


def test_a_failure_never_teaches_the_profile_of_the_account_it_names(client, alice):
    for ip in (HOME, HOME_2):
        post(client, "/accounts/login/", {"username": "alice", "password": PASSWORD}, ip)
        client.cookies.clear()  # a new visit (Client.logout would record a logout)
    for _ in range(4):
        post(client, "/accounts/login/", {"username": "alice", "password": "x"}, ATTACKER)
    profile = Profile.objects.get(key=f"u:{alice.pk}")
    assert profile.data["n"] == 2  # only the two successful logins taught
    assert set(profile.data["k"]["ip"]) == {"81.2.69.0/24"}
    assert set(profile.data["k"]["asn"]) == {"64600"}
    assert len(profile.data["fail"]) == 4  # failures are counted, not learned


def test_outcome_filter_in_the_api(client, alice, staff_client):
    post(client, "/accounts/login/", {"username": "alice", "password": "x"}, ATTACKER)
    post(client, "/accounts/login/", {"username": "alice", "password": PASSWORD}, HOME)
    failures = staff_client.get("/api/tracking/activities/?outcome=failure").json()["results"]
    assert [(r["username"], r["outcome"], r["status"]) for r in failures] == [
        ("alice", "failure", 200)
    ]
    successes = staff_client.get("/api/tracking/activities/?outcome=success").json()["results"]
    assert {r["outcome"] for r in successes} == {"success"} and len(successes) >= 1
    assert staff_client.get("/api/tracking/activities/?outcome=maybe").status_code == 400


@pytest.mark.parametrize("fmt", ["ndjson", "json", "csv"])
def test_outcome_survives_export_and_import(client, alice, tmp_path, fmt):
    post(client, "/accounts/login/", {"username": "alice", "password": "x"}, ATTACKER)
    post(client, "/accounts/login/", {"username": "alice", "password": PASSWORD}, HOME)
    before = {str(a.id): (a.status, a.outcome) for a in Activity.objects.all()}
    path = tmp_path / f"out.{fmt}"
    call_command("tracking", "export", "--format", fmt, "-o", str(path), stdout=io.StringIO())
    Activity.objects.all().delete()
    call_command("tracking", "import", str(path), "--quiet", stdout=io.StringIO())
    after = {str(a.id): (a.status, a.outcome) for a in Activity.objects.all()}
    assert after == before and (200, "failure") in after.values()
    assert all(row_ok(a) for a in Activity.objects.all())


def test_import_without_outcome_uses_the_status_and_refuses_bad_values(tmp_path):
    from tracking.cli.import_ import BadRecord, event_from_record

    base = {"timestamp": "2026-01-01T10:00:00Z", "type": "AUTH", "ip_address": ATTACKER}
    lines = [
        {**base, "status": 401, "username": "alice"},
        {**base, "status": 200, "username": "alice"},
        {**base, "status": 200, "username": "alice", "outcome": "failure"},
    ]
    path = tmp_path / "in.ndjson"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    call_command("tracking", "import", str(path), "--quiet", stdout=io.StringIO())
    assert [(a.status, a.outcome) for a in Activity.objects.order_by("status", "outcome")] == [
        (200, "failure"),
        (200, "success"),
        (401, "failure"),
    ]
    with pytest.raises(BadRecord, match="invalid outcome"):
        event_from_record({**base, "outcome": "maybe"})


def test_async_middleware_records_the_request(alice, settings):
    async def view(request):
        return HttpResponse(status=401)

    middleware = TrackingMiddleware(view)
    request = RequestFactory().post(
        "/api/login/", {"username": "alice"}, REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=HOME
    )
    response = async_to_sync(middleware)(request)
    assert response.status_code == 401
    (row,) = auth_rows()
    assert (row.outcome, row.ip_address, row.username) == ("failure", HOME, "alice")


def admin_change(client, target, **changes):
    data = {
        "username": target.username,
        "email": target.email,
        "first_name": "",
        "last_name": "",
        "is_active": "on",
        "date_joined_0": target.date_joined.strftime("%Y-%m-%d"),
        "date_joined_1": target.date_joined.strftime("%H:%M:%S"),
        "_save": "Save",
    }
    data.update(changes)
    return post(client, f"/admin/auth/user/{target.pk}/change/", data, ATTACKER)


def test_account_changes_name_fields_actor_and_request(
    client, alice, boss, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        post(client, "/admin/login/", {"username": "boss", "password": PASSWORD}, ATTACKER)
        resp = admin_change(client, alice, email="mallory@evil.test", is_superuser="on")
        assert resp.status_code == 302, resp.content[:2000]
    (admin_request,) = Activity.objects.filter(type="ADMIN")
    (change,) = Activity.objects.filter(type="ACCOUNT")
    assert change.user_id == boss.pk and change.ip_address == ATTACKER
    assert change.session_id == admin_request.session_id != ""
    assert change.endpoint == admin_request.endpoint == f"/admin/auth/user/{alice.pk}/change/"
    assert change.params["object"]["username"] == "alice"
    assert change.params["fields"] == ["email", "is_superuser"]
    assert change.params["changes"]["is_superuser"] == [False, True]
    alice.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        alice.set_password("a-new-password-1")
        alice.save()
        alice.groups.add(Group.objects.create(name="ops"))
    password, group = Activity.objects.filter(type="ACCOUNT").order_by("timestamp")[1:]
    # Outside a request: the account itself; the password named, never its value or hash.
    assert password.user_id == alice.pk and password.params["fields"] == ["password"]
    assert "password" not in password.params["changes"]
    assert alice.password not in json.dumps(password.params)
    assert group.params["changes"] == {"groups": {"added": ["ops"]}}


def test_last_login_updates_and_rolled_back_changes_record_nothing(
    client, alice, django_capture_on_commit_callbacks
):
    from django.db import transaction

    with django_capture_on_commit_callbacks(execute=True):
        post(client, "/accounts/login/", {"username": "alice", "password": PASSWORD}, HOME)
    assert not Activity.objects.filter(type="ACCOUNT").exists()
    with pytest.raises(RuntimeError), transaction.atomic():
        alice.is_staff = True
        alice.save()
        raise RuntimeError
    assert not Activity.objects.filter(type="ACCOUNT").exists()


def test_takeover_follow_up_is_flagged_next_to_the_login(
    client, alice, django_capture_on_commit_callbacks
):
    for ip in (HOME, HOME_2, HOME, HOME_2, HOME, HOME_2):
        post(client, "/accounts/login/", {"username": "alice", "password": PASSWORD}, ip)
        client.cookies.clear()  # a new visit (Client.logout would record a logout)
    with django_capture_on_commit_callbacks(execute=True):
        post(client, "/accounts/login/", {"username": "alice", "password": PASSWORD}, ATTACKER)
        data = {
            "old_password": PASSWORD,
            "new_password1": "attacker-owns-this-1",
            "new_password2": "attacker-owns-this-1",
        }
        assert post(client, "/accounts/password_change/", data, ATTACKER).status_code == 302
    login = Activity.objects.filter(type="AUTH", ip_address=ATTACKER).get()
    change = Activity.objects.get(type="ACCOUNT")
    assert change.flagged and {"account_takeover", "change_after_new_login"} <= set(change.tags)
    assert change.session_id == login.session_id and change.timestamp > login.timestamp
    queue = list(Activity.objects.flagged_queue())
    assert change in queue and login in queue
    assert queue.index(change) == queue.index(login) - 1  # newest first: side by side


def test_checks_report_bad_capture_settings(settings):
    from tracking.capture.checks import check_capture

    settings.TRACKING_PATHS = [{"path": "(", "type": "NOPE", "methods": "POST", "x": 1}]
    settings.TRACKING_CHANGE_MODELS = {"auth.User": ["nope"], "no.Model": ["x"]}
    settings.TRACKING_AUTH_SIGNALS = "yes"
    messages = check_capture()
    ids = [m.id for m in messages]
    assert ids.count("tracking.E160") == 4 and ids.count("tracking.E163") == 2
    assert "tracking.E161" in ids
    text = " ".join(m.msg for m in messages)
    assert "not a regular expression" in text and "'NOPE' is not an activity type" in text
    settings.TRACKING_PATHS = [{"path": r"^/accounts/password_reset/", "type": "ACCOUNT"}]
    settings.TRACKING_CHANGE_MODELS = {"auth.Group": ["name"]}
    settings.TRACKING_AUTH_SIGNALS = True
    assert check_capture() == []


def test_account_changes_setting_turns_recording_off(
    alice, settings, django_capture_on_commit_callbacks
):
    settings.TRACKING_ACCOUNT_CHANGES = False
    with django_capture_on_commit_callbacks(execute=True):
        alice.is_superuser = True
        alice.save()
        alice.groups.add(Group.objects.create(name="ops"))
    assert not Activity.objects.exists()


def test_authenticate_without_request_inside_a_request_uses_the_request(client, alice):
    """DRF versions that call authenticate() without request=: the middleware's request."""
    post(client, "/legacy/token/", {"username": "alice", "password": "nope"}, ATTACKER)
    post(client, "/legacy/token/", {"username": "alice", "password": PASSWORD}, HOME)
    failed, ok = auth_rows()
    assert (failed.status, failed.outcome, failed.ip_address) == (400, "failure", ATTACKER)
    assert failed.user_id == alice.pk and failed.endpoint == "/legacy/token/"
    assert (ok.status, ok.outcome) == (200, "success")


def test_async_stack_login_view(alice, settings):
    from django.test import AsyncClient

    settings.TRACKING_TRUSTED_PROXIES = ["127.0.0.1/32"]  # AsyncClient's peer is the proxy
    client = AsyncClient()
    for password in ("nope", PASSWORD):
        async_to_sync(client.post)(
            "/accounts/login/",
            {"username": "alice", "password": password},
            headers={"X-Forwarded-For": HOME},
        )
    assert [(r.status, r.outcome, r.ip_address) for r in auth_rows()] == [
        (200, "failure", HOME),
        (302, "success", HOME),
    ]


def test_deletions_of_administrators_and_watched_models_are_recorded(
    alice, boss, settings, django_capture_on_commit_callbacks
):
    settings.TRACKING_CHANGE_MODELS = {"auth.Group": ["name"]}
    ops = Group.objects.create(name="ops")
    with django_capture_on_commit_callbacks(execute=True):
        boss.delete()
        alice.delete()  # an ordinary account's closure is the site's business
        Group.objects.filter(pk=ops.pk).delete()  # QuerySet.delete sends post_delete too
    deleted = {
        (
            a.params["object"]["model"],
            a.params["object"].get("username", a.params["object"].get("name")),
        )
        for a in Activity.objects.filter(type="ACCOUNT")
        if a.params["action"] == "deleted"
    }
    assert deleted == {("auth.user", "boss"), ("auth.group", "ops")}


def test_other_models_keep_django_fast_delete(settings):
    # A post_delete receiver for every model would make each QuerySet.delete() of the site
    # fetch the rows first: only the watched models have one.
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tracking.models import Counter

    Counter.objects.create(namespace="n", key="k", count=1)
    with CaptureQueriesContext(connection) as queries:
        Counter.objects.filter(namespace="n").delete()
    assert [q["sql"].split()[0] for q in queries] == ["DELETE"]
    settings.TRACKING_CHANGE_MODELS = {"tracking.Counter": ["key"]}  # watched now: reconnected
    Counter.objects.create(namespace="n", key="k", count=1)
    with CaptureQueriesContext(connection) as queries:
        Counter.objects.filter(namespace="n").delete()
    assert [q["sql"].split()[0] for q in queries] == ["SELECT", "DELETE"]
    settings.TRACKING_ACCOUNT_CHANGES = False  # nothing watched
    Counter.objects.create(namespace="n", key="k", count=1)
    with CaptureQueriesContext(connection) as queries:
        Counter.objects.filter(namespace="n").delete()
    assert [q["sql"].split()[0] for q in queries] == ["DELETE"]
