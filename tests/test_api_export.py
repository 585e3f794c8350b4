"""GET api/tracking/activities/export/: formats, filters, streaming, file name, permission."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from datetime import timezone as dt_timezone

import pytest

from tracking.export.record import EXPORT_FIELDS
from tracking.models import Activity
from tracking.testing.factories import make_activities, make_activity

UTC = dt_timezone.utc

pytestmark = pytest.mark.django_db
URL = "/api/tracking/activities/export/"


def body(resp) -> str:
    assert resp.streaming
    return b"".join(resp.streaming_content).decode()


def test_default_is_csv_with_every_field(staff_client):
    make_activities(3)
    resp = staff_client.get(URL)
    assert resp.status_code == 200
    assert resp["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(body(resp))))
    assert tuple(rows[0]) == EXPORT_FIELDS
    assert len(rows) == 4


@pytest.mark.parametrize(
    "fmt, ctype",
    [("csv", "text/csv"), ("json", "application/json"), ("ndjson", "application/x-ndjson")],
)
def test_format_param_is_not_drf_format_override(staff_client, fmt, ctype):
    make_activity(tags=["a", "b"], flagged=True)
    resp = staff_client.get(URL, {"format": fmt})
    assert resp.status_code == 200, resp.status_code
    assert resp["Content-Type"].startswith(ctype)
    assert f'.{fmt}"' in resp["Content-Disposition"]
    text = body(resp)
    if fmt == "json":
        records = json.loads(text)
    elif fmt == "ndjson":
        records = [json.loads(line) for line in text.splitlines()]
    else:
        records = list(csv.DictReader(io.StringIO(text)))
    assert len(records) == 1
    assert list(records[0]) == list(EXPORT_FIELDS)
    flagged = records[0]["flagged"]
    assert flagged in (True, "true")


def test_unknown_format_is_400(staff_client):
    resp = staff_client.get(URL, {"format": "xml"})
    assert resp.status_code == 400 and "format" in resp.json()


def test_filters_apply_and_order_is_chronological(staff_client):
    make_activities(5, type="AUTH")
    make_activities(3, type="PAYMENT", flagged=True)
    resp = staff_client.get(URL, {"format": "ndjson", "flagged": "true"})
    records = [json.loads(line) for line in body(resp).splitlines()]
    assert len(records) == 3 and {r["type"] for r in records} == {"PAYMENT"}
    stamps = [r["timestamp"] for r in records]
    assert stamps == sorted(stamps)
    assert staff_client.get(URL, {"since": "soon"}).status_code == 400


def test_file_name_has_the_time_range(staff_client):
    make_activity(timestamp=datetime(2024, 1, 5, 10, 0, tzinfo=UTC))
    resp = staff_client.get(URL, {"since": "2024-01-01", "until": "2024-01-31"})
    assert (
        resp["Content-Disposition"] == 'attachment; filename="activities_2024-01-01_2024-01-31.csv"'
    )
    resp = staff_client.get(URL, {"format": "json", "since": "2024-01-01T06:00:00Z"})
    name = resp["Content-Disposition"]
    assert name.startswith('attachment; filename="activities_20240101T060000Z_') and name.endswith(
        '.json"'
    )
    resp = staff_client.get(URL)
    assert 'filename="activities_20240105T100000Z_' in resp["Content-Disposition"]


def test_export_streams_a_large_queryset_lazily(staff_client, monkeypatch):
    """The response is a generator over QuerySet.iterator: nothing is read up front, and
    rows are pulled one chunk at a time as the client reads."""
    make_activities(2000)
    pulled = []
    from django.db.models.query import QuerySet

    real_iterator = QuerySet.iterator

    def spy(self, chunk_size=None):
        assert chunk_size, "iterator() must be chunked"
        for obj in real_iterator(self, chunk_size=chunk_size):
            # the export reads value rows (id first), not model instances
            pulled.append(obj[0] if isinstance(obj, tuple) else obj.pk)
            yield obj

    monkeypatch.setattr(QuerySet, "iterator", spy)
    monkeypatch.setattr("tracking.export.values.CHUNK_SIZE", 250)
    resp = staff_client.get(URL, {"format": "ndjson"})
    assert resp.streaming
    assert pulled == []  # the view returned without loading rows
    stream = iter(resp.streaming_content)
    first = next(stream)
    assert json.loads(first)["id"]
    assert 1 <= len(pulled) <= 250  # one chunk, not the table
    for _ in range(500):
        next(stream)
    assert len(pulled) <= 751  # still bounded by what was read plus one chunk
    rest = list(stream)
    assert len(rest) == 1499 and len(pulled) == 2000


def test_export_needs_the_export_permission(django_user_model, api_client):
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user("v", password="pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename="view_activity"))
    api_client.force_login(user)
    make_activity()
    resp = api_client.get(URL, {"format": "csv"})
    assert resp.status_code == 403
    assert not getattr(resp, "streaming", False)


def test_csv_neutralises_formulas(staff_client):
    make_activity(
        username='=HYPERLINK("http://evil")', endpoint="+cmd", user_agent="-2+3", longitude=-0.1278
    )
    rows = list(csv.DictReader(io.StringIO(body(staff_client.get(URL)))))
    assert rows[0]["username"] == '\'=HYPERLINK("http://evil")'
    assert rows[0]["endpoint"] == "'+cmd"
    assert rows[0]["user_agent"] == "'-2+3"
    assert rows[0]["longitude"] == "'-0.1278"  # every cell, numbers too
    for row in rows:
        assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in row.values())


def test_export_is_not_captured_by_the_detail_route(staff_client):
    a = make_activity()
    assert staff_client.get(f"/api/tracking/activities/{a.pk}/").json()["id"] == str(a.pk)
    assert staff_client.get(URL).streaming
    assert Activity.objects.count() == 1
