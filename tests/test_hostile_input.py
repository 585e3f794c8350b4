"""Hostile input through the real recording path (@track views in tests/views.py) and the API.

Every request must succeed for the user, be recorded, keep a verifiable row, and come out of
the exports and HTML pages defused.
"""

import csv
import io
import json
import logging

import pytest
from django.db import connection
from django.test import override_settings

from tracking.export.csvformat import CSV_TRIGGERS
from tracking.export.record import EXPORT_FIELDS
from tracking.export.records import stream_export
from tracking.integrity.sealing import seal_pending
from tracking.integrity.verify import verify
from tracking.models import Activity
from tracking.testing.factories import make_activity

pytestmark = pytest.mark.django_db

URL = "/t/hostile/"
CRLF_ANSI = "v1\r\nX-Injected: yes\r\n\x1b[31mRED\x1b[0m\x07\x00end"


def recorded(**filters) -> Activity:
    rows = list(Activity.objects.filter(**filters))
    assert len(rows) == 1, rows
    return rows[0]


def sealed_and_verified() -> None:
    """Every recorded row seals (its MAC survived the round trip) and the log verifies."""
    seal_pending()
    assert not Activity.objects.filter(seq__isnull=True).exists()
    report = verify()
    assert report.ok, report.problems


def export(fmt: str) -> str:
    return "".join(stream_export(Activity.objects.all(), fmt))


def test_crlf_and_ansi_in_headers_do_not_inject_into_exports_or_logs(client, caplog):
    caplog.set_level(logging.DEBUG, logger="tracking")
    resp = client.get(
        URL + "?q=" + "a%0D%0AFAKE%20LINE%1B%5B2J",
        HTTP_X_EVIL=CRLF_ANSI,
        HTTP_USER_AGENT="Mozilla\r\n\x1b[2Jfake",
        HTTP_REFERER="http://x/\n2026-01-01 INFO admin logged in",
    )
    assert resp.status_code == 200 and resp.content == b"ok"
    a = recorded(endpoint=URL)
    assert "X-Evil" in a.headers  # kept (for forensics) ...
    ndjson = export("ndjson")
    lines = ndjson.splitlines()
    assert len(lines) == 1  # ... but one record stays one line
    record = json.loads(lines[0])
    assert record["headers"]["X-Evil"].startswith("v1\r\nX-Injected")
    for raw in ("\x1b", "\r", "\x07", "\x00"):
        assert raw not in ndjson
    body = export("json")
    assert "\x1b" not in body and "\r" not in body and json.loads(body)[0]["id"] == str(a.id)
    rows = list(csv.reader(io.StringIO(export("csv"))))
    assert len(rows) == 2  # header + one record, whatever the embedded newlines
    # Text logs written while recording never carry the raw control characters.
    for rec in caplog.records:
        text = rec.getMessage()
        assert "\x1b" not in text and "X-Injected" not in text
    sealed_and_verified()


def test_invalid_utf8_in_query_body_and_headers(client):
    resp = client.generic(
        "POST",
        URL + "?name=%FF%FEcaf%C3",
        data=b'{"a": "\xff\xfe\xc3", "b": 1}',
        content_type="application/json",
        HTTP_X_BYTES="caf\xe9\xff\xfe",
    )
    assert resp.status_code == 200
    a = recorded(endpoint=URL)
    assert "\ufffd" in a.params["query"]["name"]
    assert a.params["body"]["b"] == 1 and "\ufffd" in a.params["body"]["a"]
    assert a.headers["X-Bytes"].startswith("caf")
    resp = client.generic(
        "POST",
        URL + "form",
        data=b"x=\xff\xfe&y=2",
        content_type="application/x-www-form-urlencoded",
    )
    assert resp.status_code == 200
    assert recorded(endpoint=URL + "form").params["body"]["y"] == "2"
    json.loads(export("json"))
    sealed_and_verified()


def test_multi_megabyte_header_body_and_query_are_truncated_with_a_marker(client):
    big = "A" * (3 * 1024 * 1024)
    resp = client.post(
        URL + "?q=" + "B" * (2 * 1024 * 1024),
        data=json.dumps({"blob": big}),
        content_type="application/json",
        HTTP_X_HUGE="C" * (2 * 1024 * 1024),
        HTTP_USER_AGENT="D" * (1024 * 1024),
    )
    assert resp.status_code == 200
    a = recorded(endpoint=URL)
    assert len(a.headers["X-Huge"]) < 5000 and "truncated" in a.headers["X-Huge"]
    assert isinstance(a.params["body"], str) and "MAX_BODY_BYTES" in a.params["body"]
    assert len(json.dumps(a.params)) < 20000 and "truncated" in json.dumps(a.params)
    assert len(a.user_agent) <= 512
    with connection.cursor() as cur:
        cur.execute("SELECT length(headers), length(params) FROM tracking_activity")
        h, p = cur.fetchone()
    assert h < 50_000 and p < 50_000  # the stored row stays small
    sealed_and_verified()


@pytest.mark.parametrize("depth", [60, 100_000])
def test_deeply_nested_json_body(client, depth):
    body = "[" * depth + "]" * depth if depth > 1000 else json.dumps(_nest(depth))
    resp = client.post(URL, data=body, content_type="application/json")
    assert resp.status_code == 200
    a = recorded(endpoint=URL)
    text = json.dumps(a.params)
    assert "max depth exceeded" in text or "invalid JSON" in text
    sealed_and_verified()


def _nest(depth: int):
    doc = {"leaf": "x", "password": "p4ss"}
    for i in range(depth):
        doc = {f"k{i}": doc}
    return doc


def test_garbage_user_agent(client):
    ua = "\x00\x01\xff" + "".join(chr(c) for c in range(0x2500, 0x2600)) * 40 + "';--<b>"
    resp = client.get(URL, HTTP_USER_AGENT=ua)
    assert resp.status_code == 200
    a = recorded(endpoint=URL)
    assert len(a.user_agent) <= 512 and "\x00" not in a.user_agent
    assert isinstance(a.device, str) and isinstance(a.browser, str)
    sealed_and_verified()


@pytest.mark.parametrize(
    "xff",
    [
        "1.2.3.4",
        "<script>, 999.1.1.1, ::zz, 1.2.3.4",
        "unknown, , ,",
        "1.2.3.4:443, [2001:db8::1]:80",
        "1.1.1.1, " * 300,
    ],
)
def test_spoofed_or_malformed_forwarded_for_from_a_direct_client(client, xff):
    resp = client.get(URL, REMOTE_ADDR="81.2.69.10", HTTP_X_FORWARDED_FOR=xff)
    assert resp.status_code == 200
    a = recorded(endpoint=URL)
    assert a.ip_address == "81.2.69.10"  # no proxy is trusted: the header is not believed
    assert a.remote_addr == "81.2.69.10"
    assert len(a.forwarded_for) <= 512 and a.forwarded_for.startswith(xff.strip()[:10])
    sealed_and_verified()


@override_settings(TRACKING_TRUSTED_PROXIES=["10.0.0.0/8"])
def test_malformed_forwarded_for_behind_a_trusted_proxy(client):
    resp = client.get(
        URL, REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="garbage, 81.2.69.10, not-an-ip"
    )
    assert resp.status_code == 200
    a = recorded(endpoint=URL)
    assert a.ip_address in ("81.2.69.10", "10.0.0.5")  # never a garbage token
    assert a.remote_addr == "10.0.0.5"
    sealed_and_verified()


@pytest.mark.parametrize(
    "remote,expected",
    [
        ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
        ("::ffff:81.2.69.10", "81.2.69.10"),
        ("::1", "::1"),
    ],
)
def test_ipv6_and_ipv4_mapped_addresses(client, remote, expected):
    resp = client.get(URL, REMOTE_ADDR=remote)
    assert resp.status_code == 200
    a = recorded(endpoint=URL)
    assert a.ip_address == expected
    if expected == "81.2.69.10":
        assert a.city == "London"  # the mapped address is geolocated as IPv4
    sealed_and_verified()


SQL_HTML = "<script>alert('x')</script>\"'; DROP TABLE tracking_activity;--"


def test_sql_and_html_in_every_free_text_field_are_stored_verbatim_and_escaped(
    client, staff_user, django_user_model
):
    user = django_user_model.objects.create_user(username="u<b>'x\"", password="pw")
    client.force_login(user)
    resp = client.post(
        URL + "%3Cscript%3E'--/?q=" + "%3Cscript%3Ealert(1)%3C/script%3E%27%3B--",
        data=json.dumps({"comment": SQL_HTML}),
        content_type="application/json",
        HTTP_USER_AGENT=SQL_HTML,
        HTTP_X_NOTE=SQL_HTML,
    )
    assert resp.status_code == 200
    a = Activity.objects.get()
    assert a.user_agent == SQL_HTML and a.params["body"]["comment"] == SQL_HTML
    make_activity(
        username=SQL_HTML[:150],
        city=SQL_HTML[:128],
        region=SQL_HTML[:128],
        isp=SQL_HTML,
        endpoint=SQL_HTML,
        device=SQL_HTML[:64],
        os=SQL_HTML[:64],
        browser=SQL_HTML[:64],
        forwarded_for=SQL_HTML,
        tags=["<img src=x onerror=alert(1)>"],
    )
    assert Activity.objects.count() == 2  # the table is still there
    client.force_login(staff_user)
    pages = ["/admin/tracking/activity/"]
    for row in Activity.objects.all():
        pages += [
            f"/admin/tracking/activity/{row.pk}/change/",
            f"/api/tracking/dashboard/activity/{row.pk}/",
        ]
    pages.append("/api/tracking/dashboard/")
    for page in pages:
        resp = client.get(page)
        assert resp.status_code == 200, page
        html = resp.content.decode()
        assert "<script>alert(" not in html, page
        assert "<img src=x onerror" not in html, page
    change = client.get(f"/admin/tracking/activity/{a.pk}/change/").content.decode()
    assert "&lt;script&gt;alert(" in change
    sealed_and_verified()


FORMULAS = ['=HYPERLINK("http://x","y")', "+1+1", "-2+3", "@SUM(A1)", "\t=1", "\r=1", "'=1"]


def test_csv_formula_payloads_in_every_exported_field(staff_client, client):
    for i, f in enumerate(FORMULAS):
        make_activity(
            type=f[:32],
            username=f,
            session_id=f[:64],
            forwarded_for=f,
            isp=f,
            country=f[:2],
            region=f,
            city=f,
            device=f,
            os=f,
            browser=f,
            user_agent=f,
            endpoint=f,
            method=f[:10],
            severity="",
            tags=[f.replace(",", "")],
            headers={"X": f},
            params={"q": f},
        )
    client.get(URL + "?q=" + "%3D1%2B1", HTTP_USER_AGENT="=cmd|' /C calc'!A0")
    outputs = [export("csv")]
    resp = staff_client.get("/api/tracking/activities/export/?format=csv")
    assert resp.status_code == 200
    outputs.append(
        b"".join(resp.streaming_content).decode() if resp.streaming else resp.content.decode()
    )
    typed = {
        "id",
        "timestamp",
        "user",
        "flagged",
        "is_mobile",
        "is_bot",
        "asn",
        "latitude",
        "longitude",
        "accuracy_radius",
        "status",
        "duration",
        "risk_score",
    }
    for text in outputs:
        rows = list(csv.DictReader(io.StringIO(text)))
        assert len(rows) == len(FORMULAS) + 1
        for row in rows:
            for name in EXPORT_FIELDS:
                cell = row[name]
                if name in typed or not cell:
                    continue
                assert not cell.startswith(CSV_TRIGGERS) or cell.startswith("'"), (name, cell)
                if cell.startswith("'"):
                    assert cell[1:].startswith(CSV_TRIGGERS)


BAD_FILTERS = [
    "status=abc",
    "status=99999999999999999999",
    "status_class=9zz",
    "since=yesterday",
    "until=2026-13-45",
    "duration_min=fast",
    "duration_max=NaN%20",
    "flagged=maybe",
    "asn=-1x",
    "ip_address=999.1.1.1",
    "ip_address=10.0.0.0/99",
    "user=abc",
    "page=-1",
    "page=abc",
    "page_size=abc",
    "ordering=;DROP",
    "review_status=%00",
    "severity=extreme",
    "tags=%3Cscript%3E",
    "country=%FF%FE",
    "cursor=%%%",
    "since=2026-01-01T99:00",
    "search=" + "x" * 5000,
    "method=" + "%00" * 5,
    "type=" + "\u202e" * 3,
]


@pytest.mark.parametrize("query", BAD_FILTERS)
def test_filter_parameters_with_wrong_types_never_500(staff_client, query):
    make_activity()
    for path in (
        "/api/tracking/activities/",
        "/api/tracking/stats/",
        "/api/tracking/activities/export/",
    ):
        resp = staff_client.get(f"{path}?{query}")
        assert resp.status_code < 500, (path, query, resp.status_code)


@pytest.mark.parametrize(
    "query",
    [
        "status=abc",
        "since=yesterday",
        "duration_min=fast",
        "flagged=maybe",
        "asn=-1x",
        "ip_address=999.1.1.1",
    ],
)
def test_typed_filters_answer_400_naming_the_field(staff_client, query):
    resp = staff_client.get(f"/api/tracking/activities/?{query}")
    assert resp.status_code == 400
    assert query.split("=")[0] in json.dumps(resp.json())
