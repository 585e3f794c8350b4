"""@track on every kind of view, recording the real user, status, duration and request data."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient
from rest_framework.authtoken.models import Token

from tracking.integrity import macs as integrity
from tracking.models import Activity
from tracking.pipeline import writer

pytestmark = pytest.mark.django_db


def one(**filters) -> Activity:
    rows = list(Activity.objects.filter(**filters))
    assert len(rows) == 1, rows
    return rows[0]


def test_function_view_records_everything(client, plain_user):
    client.force_login(plain_user)
    resp = client.post(
        "/t/rec/login/?next=/home&token=abc123",
        data=json.dumps(
            {"username": "plain", "password": "hunter2", "nested": {"newPassword": "x1"}}
        ),
        content_type="application/json",
        HTTP_USER_AGENT="Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
        HTTP_AUTHORIZATION="Bearer supersecret",
        REMOTE_ADDR="81.2.69.10",
    )
    assert resp.status_code == 200
    a = one(endpoint="/t/rec/login/")
    assert a.type == "AUTH" and a.type_display == "Authentication"
    assert a.user_id == plain_user.pk and a.username == "plain"
    assert a.method == "POST" and a.status == 200
    assert a.duration is not None and a.duration >= 0
    assert a.session_id == integrity.hash_session_key(client.session.session_key)
    assert a.session_id != client.session.session_key
    assert a.ip_address == "81.2.69.10"
    assert (a.city, a.country, a.asn, a.isp) == ("London", "GB", 64600, "Thames Broadband")
    assert (a.device, a.os, a.is_mobile) == ("iPhone", "iOS 17.1", True)
    assert a.params["query"] == {"next": "/home", "token": "[REDACTED]"}
    assert a.params["body"]["password"] == "[REDACTED]"
    assert a.params["body"]["nested"]["newPassword"] == "[REDACTED]"
    assert a.params["body"]["username"] == "plain"
    assert a.headers["Authorization"] == "[REDACTED]"
    assert a.headers["Cookie"] == "[REDACTED]"
    assert a.headers["Content-Type"] == "application/json"
    assert integrity.row_ok(a)


def test_exception_recorded_as_500_and_reraised(client):
    with pytest.raises(ValueError, match="boom"):
        client.get("/t/rec/boom/")
    assert one(endpoint="/t/rec/boom/").status == 500


@pytest.mark.parametrize("code", [201, 302, 404, 503])
def test_status_from_real_response(client, code):
    client.get(f"/t/rec/status/{code}/")
    assert one(endpoint=f"/t/rec/status/{code}/").status == code


def test_anonymous_user_is_null(client):
    client.get("/t/rec/login/")
    a = one(endpoint="/t/rec/login/")
    assert a.user_id is None and a.username == ""


def test_class_decorated(client):
    assert client.get("/t/rec/class/").content == b"class"
    assert one(endpoint="/t/rec/class/").type == "ACCOUNT"


def test_method_decorator_on_dispatch(client):
    assert client.get("/t/rec/dispatch/").content == b"dispatch"
    assert one(endpoint="/t/rec/dispatch/").status == 200


def test_drf_token_user_is_recorded(client, plain_user):
    token = Token.objects.create(user=plain_user)
    resp = client.get("/t/rec/apiview/", HTTP_AUTHORIZATION=f"Token {token.key}")
    assert resp.json() == {"user": "plain"}
    a = one(endpoint="/t/rec/apiview/")
    assert a.user_id == plain_user.pk and a.username == "plain"
    assert a.headers["Authorization"] == "[REDACTED]"


def test_drf_post_body_recorded_after_parsers_read_it(client, plain_user):
    token = Token.objects.create(user=plain_user)
    resp = client.post(
        "/t/rec/apiview/",
        data={"amount": 5, "card_number": "4111111111111111", "cvv": "123"},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Token {token.key}",
    )
    assert resp.status_code == 201 and resp.json() == {"got": ["amount", "card_number", "cvv"]}
    a = one(endpoint="/t/rec/apiview/")
    assert a.status == 201 and a.user_id == plain_user.pk
    assert a.params["body"] == {"amount": 5, "card_number": "[REDACTED]", "cvv": "[REDACTED]"}


def test_drf_viewset(client, plain_user):
    token = Token.objects.create(user=plain_user)
    client.get("/t/rec/viewset/", HTTP_AUTHORIZATION=f"Token {token.key}")
    assert one(endpoint="/t/rec/viewset/").username == "plain"


@pytest.mark.parametrize("url", ["/t/rec/api-outer/", "/t/rec/api-inner/"])
def test_api_view_either_order(client, plain_user, url):
    token = Token.objects.create(user=plain_user)
    client.get(url, HTTP_AUTHORIZATION=f"Token {token.key}")
    a = one(endpoint=url)
    assert a.username == "plain" and a.status == 200


def test_drf_bad_token_is_anonymous_401(client):
    resp = client.get("/t/rec/apiview/", HTTP_AUTHORIZATION="Token nope")
    assert resp.status_code in (401, 403)
    a = one(endpoint="/t/rec/apiview/")
    assert a.status == resp.status_code and a.user_id is None


@pytest.mark.django_db(transaction=True)
def test_async_view_sync_log(plain_user):
    import asyncio

    async def run():
        ac = AsyncClient()
        await sync_to_async(ac.force_login)(plain_user)  # aforce_login needs Django 5.0
        return await ac.get("/t/rec/async/")

    resp = asyncio.run(run())
    assert resp.status_code == 200
    assert writer.flush(10)  # committed to the intake; stored by the writer's next round
    a = one(endpoint="/t/rec/async/")
    assert a.username == "plain" and a.type == "API"


@pytest.mark.django_db(transaction=True)
def test_async_view_async_log(plain_user):
    import asyncio

    async def run():
        ac = AsyncClient()
        await sync_to_async(ac.force_login)(plain_user)  # aforce_login needs Django 5.0
        return await ac.get("/t/rec/async-log/")

    assert asyncio.run(run()).status_code == 200
    assert writer.flush(10)
    assert one(endpoint="/t/rec/async-log/").username == "plain"


@pytest.mark.django_db(transaction=True)
def test_async_log_function_view(client):
    client.get("/t/rec/pay/")
    assert writer.flush(10), writer.stats()
    a = one(endpoint="/t/rec/pay/")
    assert a.type == "PAYMENT" and a.status == 200


@pytest.mark.django_db(transaction=True)
def test_async_class_based_view(plain_user):
    import asyncio

    async def run():
        ac = AsyncClient()
        await sync_to_async(ac.force_login)(plain_user)  # aforce_login needs Django 5.0
        return await ac.get("/t/rec/async-class/")

    resp = asyncio.run(run())
    assert resp.status_code == 202 and resp.content == b"async-class"
    assert writer.flush(10)  # committed to the intake; stored by the writer's next round
    a = one(endpoint="/t/rec/async-class/")
    assert a.status == 202 and a.username == "plain" and a.type == "ACCOUNT"


def test_bare_track_decorator(rf):
    from django.http import HttpResponse

    from tracking.capture.decorators import track

    @track
    def view(request):
        return HttpResponse("bare")

    resp = view(rf.get("/bare/", REMOTE_ADDR="10.0.0.1"))
    assert resp.content == b"bare"
    assert one(endpoint="/bare/").type == "OTHER"


def test_outcome_callable_decides_without_a_signal(client):
    client.get("/t/rec/outcome/?fail=1")
    client.get("/t/rec/outcome/")
    rows = Activity.objects.order_by("timestamp")
    assert [(r.status, r.outcome) for r in rows] == [(200, "failure"), (200, "success")]


def test_outcome_defaults_to_the_status(client):
    client.get("/t/rec/login/")
    assert one(endpoint="/t/rec/login/").outcome == "success"


def test_outcome_must_be_callable():
    from tracking.capture.decorators import track

    with pytest.raises(TypeError, match="callable"):
        track(activity_type="AUTH", outcome="failure")


def test_auth_signals_merge_into_the_tracked_activity(client, plain_user, settings):
    settings.TRACKING_AUTH_SIGNALS = True
    client.post("/t/rec/signal-login/", {"u": "plain", "p": "wrong"})
    client.post("/t/rec/signal-login/", {"u": "plain", "p": "pw"})
    rows = list(Activity.objects.order_by("timestamp"))
    assert [(r.status, r.outcome, r.user_id) for r in rows] == [
        (200, "failure", plain_user.pk),
        (200, "success", plain_user.pk),
    ]
    assert [r.params["auth_event"] for r in rows] == ["login_failed", "login"]
