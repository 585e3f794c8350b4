"""Finding 5: common secret names and places were shown in clear by the API and exports:
Referer and ``next`` query strings, body keys pwd/pass/jwt/access_key/credentials, OAuth
``code``, header X-Upstream-Key. Recorded through the real path (@track), read back through
the API detail and the export."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest
from django.db import connection

from tracking.models import Activity
from tracking.redaction import (
    REDACTED,
    is_sensitive,
    redact_headers,
    redact_params,
    strip_url_query,
)

pytestmark = pytest.mark.django_db
URL = "/t/hostile/"
SECRET = "S3CR3Tvalue9x"


def record(client, *, query=None, body=None, json_body=None, **headers) -> Activity:
    url = URL + ("?" + urlencode(query) if query else "")
    if json_body is not None:
        client.post(url, data=json.dumps(json_body), content_type="application/json", **headers)
    else:
        client.post(url, data=body or {}, **headers)
    return Activity.objects.get()


def shown(staff_client, row) -> str:
    detail = staff_client.get(f"/api/tracking/activities/{row.pk}/").content.decode()
    export = staff_client.get("/api/tracking/activities/export/", {"format": "ndjson"})
    return detail + b"".join(export.streaming_content).decode()


def raw_row(row) -> str:
    with connection.cursor() as cur:
        cur.execute("SELECT * FROM tracking_activity")
        return repr(cur.fetchall())


@pytest.mark.parametrize(
    "key",
    [
        "pwd",
        "pass",
        "jwt",
        "access_key",
        "credentials",
        "Pw",
        "user_pass",
        "newPwd",
        "id_jwt",
        "SIGNING_KEY",
        "api-keys",
        "client_credential",
        "passcode",
        "key",
        "bearer",
    ],
)
def test_body_keys_are_redacted_in_api_and_export(client, staff_client, key):
    row = record(client, body={key: SECRET, "name": "ok"})
    out = shown(staff_client, row)
    assert SECRET not in out and REDACTED in out and "ok" in out
    assert SECRET not in raw_row(row)


@pytest.mark.parametrize("key", ["pwd", "jwt", "access_key", "credentials"])
def test_json_body_keys_are_redacted_at_any_depth(client, staff_client, key):
    row = record(client, json_body={"outer": [{key: SECRET}]})
    assert SECRET not in shown(staff_client, row)


@pytest.mark.parametrize(
    "header",
    [
        "HTTP_X_UPSTREAM_KEY",
        "HTTP_X_SIGNING_KEY",
        "HTTP_X_BEARER",
        "HTTP_X_JWT",
        "HTTP_X_CLIENT_CREDENTIAL",
        "HTTP_X_ACCESS_KEYS",
    ],
)
def test_secret_headers_are_redacted(client, staff_client, header):
    row = record(client, **{header: SECRET})
    assert SECRET not in shown(staff_client, row)


@pytest.mark.parametrize(
    "referer",
    [
        f"https://shop.example/reset?token={SECRET}",
        f"https://shop.example/cb#access_token={SECRET}",
        f"http://[2001:db8::1]:8080/a/b?x=1&t={SECRET}",
        f"/relative/path?code={SECRET}",
    ],
)
def test_referer_query_strings_are_stripped(client, staff_client, referer):
    row = record(client, HTTP_REFERER=referer)
    out = shown(staff_client, row)
    assert SECRET not in out and "?[REDACTED]" in out
    assert referer.split("?")[0].split("#")[0].split("//")[-1] in out  # host and path kept


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("next", f"/account/?token={SECRET}"),
        ("redirect_uri", f"https://app.example/cb?code={SECRET}&state=1"),
        ("return_to", f"https://app.example/x#id_token={SECRET}"),
        ("continue", f"//evil.example/p?sid={SECRET}"),
    ],
)
def test_url_valued_params_lose_their_query_strings(client, staff_client, key, value):
    for where in ("query", "body"):
        Activity.objects.all().delete()
        row = record(client, **{where: {key: value}})
        out = shown(staff_client, row)
        assert SECRET not in out and "?[REDACTED]" in out, where


def test_oauth_callback_code_is_redacted(client, staff_client):
    row = record(client, query={"code": SECRET, "state": "xyz"})
    out = shown(staff_client, row)
    assert SECRET not in out and "xyz" in out


@pytest.mark.parametrize(
    "key",
    ["username", "company", "access", "passport_country", "keyboard", "status_code", "state"],
)
def test_innocent_names_are_kept(key):
    assert not is_sensitive(key)
    assert redact_params({"query": {key: "v"}}) == {"query": {key: "v"}}


def test_plain_text_and_urls_without_queries_are_kept():
    for text in ("hello world?", "https://a.example/p", "/p/q", "a?b", "what? /x?y z"):
        assert strip_url_query(text) == text
    headers = redact_headers({"Referer": "https://a.example/p?x=1", "Accept": "text/html"})
    assert headers == {"Referer": "https://a.example/p?[REDACTED]", "Accept": "text/html"}


def test_redaction_stays_idempotent():
    params = {"query": {"next": f"/a?token={SECRET}", "pwd": SECRET, "q": "x"}}
    once = redact_params(params)
    assert redact_params(once) == once
    assert redact_headers(redact_headers({"Referer": "/a?b=c"})) == {"Referer": "/a?[REDACTED]"}
