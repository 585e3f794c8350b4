"""tracking.exporting: the record, the three encodings, CSV safety, JSON validity, decoding."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

import pytest

from tracking.exporting import (
    EXPORT_FIELDS,
    activity_record,
    csv_cells,
    neutralise,
    record_from_csv_row,
    stream_export,
)
from tracking.models import Activity, Finding
from tracking.testing.factories import make_activities, make_activity

pytestmark = pytest.mark.django_db


def test_record_has_every_field_in_order(staff_user):
    a = make_activity(
        user=staff_user,
        timestamp=datetime(2024, 3, 1, 8, 30, tzinfo=UTC),
        tags=["b", "a"],
        headers={"H": "v"},
        params={"p": [1, 2]},
    )
    Finding.objects.create(
        activity_id=a.pk,
        timestamp=a.timestamp,
        detector="geo",
        tag="new_country",
        score=0.4,
        severity="medium",
        reason="first time in GB",
    )
    Finding.objects.create(
        activity_id=a.pk,
        timestamp=a.timestamp,
        detector="geo",
        tag="x",
        score=0.9,
        reason="hidden",
        suppressed=True,
    )
    rec = activity_record(Activity.objects.get(pk=a.pk))
    assert tuple(rec) == EXPORT_FIELDS
    assert rec["id"] == str(a.pk)
    assert rec["timestamp"] == "2024-03-01T08:30:00+00:00"
    assert rec["type_display"] == a.type_display
    assert rec["user"] == staff_user.pk and rec["username"] == "staff"
    assert rec["tags"] == ["a", "b"]
    assert rec["headers"] == {"H": "v"} and rec["params"] == {"p": [1, 2]}
    assert rec["findings"] == [
        {
            "detector": "geo",
            "tag": "new_country",
            "score": 0.4,
            "severity": "medium",
            "reason": "first time in GB",
        }
    ]
    json.dumps(rec)  # JSON-safe


@pytest.mark.parametrize("value", ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx", "'quoted"])
def test_neutralise_prefixes_triggers(value):
    assert neutralise(value) == "'" + value


def test_neutralise_leaves_plain_text():
    assert neutralise("alice") == "alice" and neutralise("") == ""


def test_csv_round_trips_through_record_from_csv_row():
    make_activity(
        username="=cmd",
        user_agent="'already",
        tags=["t1", "t2"],
        headers={"X": "=1"},
        params={},
        longitude=-3.7,
        is_mobile=True,
        status=None,
        duration=None,
    )
    text = "".join(stream_export(Activity.objects.all(), "csv"))
    (row,) = list(csv.DictReader(io.StringIO(text)))
    decoded = record_from_csv_row(row)
    expected = activity_record(Activity.objects.get())
    assert decoded == expected


def test_json_is_valid_for_any_content():
    nasty = 'ctl:\x00\x01\x1f quote:" backslash:\\ line:\u2028 emoji:\U0001f600 </script>'
    # PostgreSQL text cannot hold NUL: it goes in the (encrypted) headers/params only.
    make_activity(
        username=nasty.replace("\x00", "")[:150], headers={"X": nasty}, params={nasty: nasty}
    )
    for fmt in ("json", "ndjson"):
        text = "".join(stream_export(Activity.objects.all(), fmt))
        assert "\x00" not in text and "\x01" not in text
        if fmt == "json":
            (rec,) = json.loads(text)
        else:
            (rec,) = [json.loads(line) for line in text.splitlines()]
        assert rec["headers"]["X"] == nasty


def test_json_empty_and_many():
    assert json.loads("".join(stream_export(Activity.objects.none(), "json"))) == []
    make_activities(3)
    assert len(json.loads("".join(stream_export(Activity.objects.all(), "json")))) == 3


def test_unknown_format_raises_before_reading():
    with pytest.raises(ValueError, match="xml"):
        stream_export(Activity.objects.all(), "xml")


def test_csv_cells_encode_types():
    rec = {name: None for name in EXPORT_FIELDS}
    rec.update(tags=["a", "b"], flagged=False, headers={"k": "v"}, findings=[], latitude=-1.5)
    cells = dict(zip(EXPORT_FIELDS, csv_cells(rec), strict=True))
    assert cells["tags"] == "a;b" and cells["flagged"] == "false"
    assert cells["headers"] == '{"k": "v"}' and cells["findings"] == "[]"
    assert cells["latitude"] == "'-1.5" and cells["city"] == ""


def test_factory_rows_are_realistic():
    from tracking.integrity import row_ok

    rows = make_activities(5, type="AUTH")
    assert len({r.pk for r in rows}) == 5
    stored = list(Activity.objects.all())
    assert all(a.type == "AUTH" and a.ip_address and a.user_agent and row_ok(a) for a in stored)
    assert [a.timestamp for a in stored] == sorted((a.timestamp for a in stored), reverse=True)


def test_non_finite_numbers_export_as_null():
    make_activity(duration=float("nan"), risk_score=float("inf"))
    text = "".join(stream_export(Activity.objects.all(), "json"))
    (rec,) = json.loads(text)  # strict parsers reject NaN/Infinity
    assert rec["duration"] is None and rec["risk_score"] is None
    assert "NaN" not in text and "Infinity" not in text


def _reference(fmt: str) -> str:
    """The export as the model-instance path writes it (activity_record per row, one CSV
    line per record): the fast path must produce the same text."""
    from tracking.exporting import _csv_line

    records = [
        activity_record(a)
        for a in Activity.objects.order_by("timestamp", "id").prefetch_related("findings")
    ]
    if fmt == "csv":
        return _csv_line(list(EXPORT_FIELDS)) + "".join(_csv_line(csv_cells(r)) for r in records)
    if fmt == "ndjson":
        return "".join(json.dumps(r, ensure_ascii=True) + "\n" for r in records)
    body = ",\n".join(json.dumps(r, ensure_ascii=True) for r in records)
    return "[" + ("\n" + body if records else "") + "\n]\n"


@pytest.mark.parametrize("fmt", ["csv", "ndjson", "json"])
def test_fast_path_is_identical_to_the_record_path(fmt, staff_user, settings):
    from tracking import crypto
    from tracking.testing.factories import build_activity

    rows = make_activities(30)  # realistic rows, repeated payloads (exercises the cache)
    make_activity(
        user=staff_user,
        username="=cmd()",
        endpoint="-1+2",
        city="@home",
        tags=["=x", "b", "a"],
        headers={"Authorization": "secret", "X": "=1", "nl": "a\r\nb", "q": '"'},
        params={"password": "p", "n": -5, "nested": {"token": "t", "ok": [1, -0.0]}},
        longitude=-3.7,
        latitude=-0.0,
        asn=0,
        status=None,
        duration=float("nan"),
        risk_score=float("-inf"),
        is_mobile=True,
    )
    make_activity(headers={}, params={}, tags=[], duration=-12.5, country="")
    Finding.objects.create(
        activity_id=rows[3].pk,
        timestamp=rows[3].timestamp,
        detector="geo",
        tag="=t",
        score=0.4,
        reason="-reason",
    )
    Finding.objects.create(
        activity_id=rows[3].pk,
        timestamp=rows[3].timestamp,
        detector="asn",
        tag="new_asn",
        score=0.9,
        reason="r",
    )
    Finding.objects.create(
        activity_id=rows[4].pk,
        timestamp=rows[4].timestamp,
        detector="x",
        tag="hidden",
        score=1.0,
        reason="suppressed",
        suppressed=True,
    )
    # a row whose ciphertext belongs to another row (fails authentication: exported as null)
    moved = build_activity(0)
    Activity.objects.bulk_create([moved])
    from tracking.fields import Ciphertext

    Activity.objects.filter(pk=moved.pk).update(
        headers=Ciphertext(crypto.encrypt({"a": 1}, f"tracking_activity.headers.{rows[0].pk}"))
    )
    expected = _reference(fmt)
    assert "".join(stream_export(Activity.objects.order_by("timestamp", "id"), fmt)) == expected
    # small chunks: findings fetched per chunk still land on their rows
    got = "".join(stream_export(Activity.objects.order_by("timestamp", "id"), fmt, chunk_size=7))
    assert got == expected


def test_fast_path_accepts_a_prefetching_queryset():
    make_activities(3)
    qs = Activity.objects.order_by("timestamp", "id").prefetch_related("findings")
    assert "".join(stream_export(qs, "csv")) == _reference("csv")
