"""ActivityTracker.build_event: what a request becomes, with hostile and odd input."""

from __future__ import annotations

import time

import pytest
from django.core.exceptions import PermissionDenied
from django.core.files.uploadedfile import SimpleUploadedFile
from django.http import Http404, HttpResponse
from django.test import RequestFactory, override_settings

from tracking.services import ActivityTracker

rf = RequestFactory()
tracker = ActivityTracker()


def build(request, response=None, **kw):
    kw.setdefault("activity_type", "API")
    return tracker.build_event(
        request, response or HttpResponse("x"), started=time.perf_counter(), **kw
    )


def test_shape_and_no_query_in_endpoint():
    e = build(rf.get("/a/b/?password=p&x=1&x=2", REMOTE_ADDR="81.2.69.1", HTTP_USER_AGENT="curl/8"))
    assert e.endpoint == "/a/b/" and e.method == "GET" and e.status == 200
    assert e.params == {"query": {"password": "[REDACTED]", "x": ["1", "2"]}}
    assert e.user_agent == "curl/8" and e.ip_address == "81.2.69.1"
    assert e.duration is not None and e.duration >= 0
    assert e.session_id == "" and e.user_id is None
    assert "device" not in e.enrichment  # no UA parsing on the request path


def test_form_body():
    e = build(rf.post("/f/", {"username": "u", "newPassword": "p", "cvv": "1"}))
    assert e.params["body"] == {"username": "u", "newPassword": "[REDACTED]", "cvv": "[REDACTED]"}


def test_multipart_files_recorded_by_name_and_size():
    upload = SimpleUploadedFile("report.csv", b"a,b\n1,2\n")
    e = build(rf.post("/u/", {"title": "t", "file": upload}))
    assert e.params["body"]["title"] == "t"
    assert e.params["body"]["_files"] == {"file": [{"name": "report.csv", "size": 8}]}


def test_invalid_json_not_stored_raw():
    req = rf.post("/j/", data=b'{"password": "oops', content_type="application/json")
    e = build(req)
    assert e.params["body"].startswith("[body not recorded: invalid JSON")
    assert "oops" not in str(e.params)


def test_invalid_utf8_json_decoded_with_replacement():
    req = rf.post("/j/", data=b'{"name": "\xff\xfe"}', content_type="application/json")
    assert build(req).params["body"] == {"name": "\ufffd\ufffd"}


@override_settings(TRACKING_MAX_BODY_BYTES=100)
def test_large_body_not_parsed():
    req = rf.post("/j/", data=b'{"a": "' + b"x" * 500 + b'"}', content_type="application/json")
    assert build(req).params["body"] == "[body not recorded: 509 bytes > MAX_BODY_BYTES]"


def test_unknown_content_type_is_a_marker():
    req = rf.post("/x/", data=b"<xml>secret</xml>", content_type="application/xml")
    assert build(req).params["body"] == "[body not recorded: application/xml, 17 bytes]"


def test_deep_json_gets_depth_marker():
    doc = "[" * 5000 + "]" * 5000
    req = rf.post("/j/", data=doc.encode(), content_type="application/json")
    body = build(req).params["body"]
    assert "[max depth exceeded]" in str(body) or str(body).startswith("[body not recorded")


def test_control_characters_kept_as_data():
    e = build(rf.get("/c/", {"q": "a\r\nb\x1b[31m"}, HTTP_X_NOTE="x\x1b[0m"))
    assert e.params["query"]["q"] == "a\r\nb\x1b[31m"
    assert e.headers["X-Note"] == "x\x1b[0m"


@pytest.mark.parametrize(
    ("exc", "status"), [(ValueError(), 500), (Http404(), 404), (PermissionDenied(), 403)]
)
def test_exception_status(exc, status):
    e = tracker.build_event(
        rf.get("/"), None, activity_type="API", started=time.perf_counter(), exception=exc
    )
    assert e.status == status


def test_headers_from_meta_redacted():
    e = build(
        rf.get(
            "/",
            HTTP_COOKIE="sessionid=abc",
            HTTP_X_API_KEY="k",
            HTTP_ACCEPT="text/html",
            HTTP_PROXY_AUTHORIZATION="Basic x",
        )
    )
    assert (
        e.headers["Cookie"]
        == e.headers["X-Api-Key"]
        == e.headers["Proxy-Authorization"]
        == "[REDACTED]"
    )
    assert e.headers["Accept"] == "text/html"


@pytest.mark.django_db
def test_session_id_is_keyed_hash(client, plain_user):
    from tracking.integrity import macs as integrity
    from tracking.models import Activity

    client.force_login(plain_user)
    client.get("/t/rec/login/")
    key = client.session.session_key
    a = Activity.objects.get()
    assert a.session_id == integrity.hash_session_key(key) and key not in a.session_id


def test_too_many_fields_recorded_as_marker():
    qs = "&".join(f"k{i}=v" for i in range(1500))  # over DATA_UPLOAD_MAX_NUMBER_FIELDS
    e = build(rf.get(f"/q/?{qs}"))
    assert e.params["query"] == "[query not recorded: TooManyFieldsSent]"
    body = "&".join(f"f{i}=v" for i in range(1500))
    e = build(rf.post("/f/", data=body, content_type="application/x-www-form-urlencoded"))
    assert e.params["body"] == "[body not recorded: TooManyFieldsSent]"


def test_huge_keys_and_many_headers_never_raise():
    e = build(
        rf.post(
            "/j/",
            data='{"' + "k" * 20000 + '": 1}',
            content_type="application/json",
            **{f"HTTP_X_H{i}": "v" * 100 for i in range(300)},
        )
    )
    # At most MAX_HEADER_COUNT (64) headers, the rest counted under one marker.
    assert 64 <= len(e.headers) <= 65 and "[headers omitted]" in e.headers
    assert isinstance(e.params["body"], dict | str)


def test_failed_login_names_the_account_it_tried():
    # Stuffing, brute force and spraying rules count failures per targeted account.
    e = build(
        rf.post("/login/", {"username": "alice", "password": "guess"}),
        HttpResponse(status=401),
        activity_type="AUTH",
    )
    assert e.user_id is None and e.username == "alice"
    assert e.params["body"]["password"] == "[REDACTED]"
    json_req = rf.post(
        "/api/token/",
        data=b'{"Email": "bob@example.com", "password": "x"}',
        content_type="application/json",
    )
    assert build(json_req, activity_type="AUTH").username == "bob@example.com"
    assert build(rf.get("/x/?login=carol"), activity_type="AUTH").username == "carol"
    # Other types: a body's "user" may be a recipient or a search term, not the actor.
    assert build(rf.post("/pay/", {"user": "carol"}), activity_type="PAYMENT").username == ""


def test_claimed_username_ignores_markers_and_odd_values():
    from tracking.capture.tracker import claimed_username

    assert claimed_username({"body": {"username": "[REDACTED]"}}) == ""
    assert claimed_username({"body": {"username": {"nested": 1}}, "query": {}}) == ""
    assert claimed_username({"body": "[body not recorded: x]"}) == ""
    assert claimed_username({"body": {"username": True}}) == ""
    assert claimed_username({"query": {"user": ["dave", "eve"]}}) == "dave"
    assert claimed_username({"body": {"username": "x" * 500}}) == "x" * 150


@pytest.mark.django_db
def test_authenticated_user_wins_over_a_claimed_name(django_user_model):
    user = django_user_model.objects.create_user("real", password="pw")
    request = rf.post("/login/", {"username": "someone-else"})
    request.user = user
    e = build(request)
    assert e.user_id == user.pk and e.username == "real"


def _through_auth(request, session_key=None, data=None):
    """``request`` as Django's session and authentication middlewares leave it."""
    from importlib import import_module

    from django.conf import settings
    from django.contrib.auth.middleware import AuthenticationMiddleware

    engine = import_module(settings.SESSION_ENGINE)
    request.session = engine.SessionStore(session_key)
    for key, value in (data or {}).items():
        request.session[key] = value
    AuthenticationMiddleware(lambda r: HttpResponse()).process_request(request)
    return request


def test_anonymous_session_skips_building_the_anonymous_user(monkeypatch):
    """No session, Django's own lazy user: the user is known to be anonymous without running
    the auth backends (tracker._anonymous_session), and the answer is the same."""
    from django.contrib import auth

    from tracking.capture import tracker as tracker_module

    calls = []
    real = auth.get_user
    monkeypatch.setattr(auth, "get_user", lambda request: calls.append(1) or real(request))
    req = _through_auth(rf.get("/x/"))
    assert tracker_module._anonymous_session(req)
    e = build(req)
    assert e.user_id is None and e.username == "" and calls == []
    # A session holding data but no user: still anonymous, still no backend call.
    req = _through_auth(rf.get("/x/"), data={"cart": [1, 2]})
    assert tracker_module._anonymous_session(req) and build(req).user_id is None
    assert calls == []


@pytest.mark.django_db
def test_session_user_still_found(django_user_model, client):
    """A signed-in session, a user the view set, a custom lazy user: the normal path."""
    from django.contrib.auth import login
    from django.utils.functional import SimpleLazyObject

    from tracking.capture import tracker as tracker_module

    user = django_user_model.objects.create_user("sam", password="pw-long-enough-1")
    client.force_login(user)
    key = client.session.session_key
    req = _through_auth(rf.get("/x/"), session_key=key)
    assert not tracker_module._anonymous_session(req)
    assert build(req).user_id == user.pk

    req = _through_auth(rf.get("/x/"))  # the view signs the user in
    login(req, user, backend="django.contrib.auth.backends.ModelBackend")
    assert not tracker_module._anonymous_session(req)
    assert build(req).username == "sam"

    req = _through_auth(rf.get("/x/"))  # another middleware's lazy user (e.g. a token)
    req.user = SimpleLazyObject(lambda: user)
    assert not tracker_module._anonymous_session(req)
    assert build(req).user_id == user.pk
