"""tracking.export (record, csvformat, values, records): the record, the three encodings,
CSV safety, JSON validity, decoding."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from datetime import timezone as dt_timezone

import pytest

from tracking.export.csvformat import neutralise, record_from_csv_row
from tracking.export.record import EXPORT_FIELDS, JSON_FIELDS, activity_record
from tracking.export.records import stream_export
from tracking.models import Activity, Finding
from tracking.testing.factories import make_activities, make_activity

UTC = dt_timezone.utc

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


def csv_cells(record: dict) -> list[str]:
    """The CSV cells of one record, written from the documented rules (``csvformat``'s
    docstring): the oracle the export's CSV encoder is compared with."""
    cells = []
    for name in EXPORT_FIELDS:
        value = record.get(name)
        if value is None:
            cells.append("")
            continue
        if name == "tags":
            text = ";".join(value)
        elif name in JSON_FIELDS:
            text = json.dumps(value, ensure_ascii=False, sort_keys=True)
        elif isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, float):
            text = repr(value)
        else:
            text = str(value)
        cells.append(neutralise(text))
    return cells


def test_csv_encoder_follows_the_rules():
    from tracking.export.records import encode_records

    rec = {name: None for name in EXPORT_FIELDS}
    rec.update(
        tags=["a", "b"], flagged=False, headers={"k": "v"}, params={}, findings=[], latitude=-1.5
    )
    text = "".join(encode_records([rec], "csv"))
    (row,) = list(csv.reader(io.StringIO(text)))[1:]
    assert row == csv_cells(rec)
    cells = dict(zip(EXPORT_FIELDS, row, strict=True))
    assert cells["tags"] == "a;b" and cells["flagged"] == "false"
    assert cells["headers"] == '{"k": "v"}' and cells["findings"] == "[]"
    assert cells["latitude"] == "'-1.5" and cells["city"] == ""


def test_factory_rows_are_realistic():
    from tracking.integrity.macs import row_ok

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
    from tracking.export.csvformat import _csv_line

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
    from tracking.integrity import crypto
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


# --- the raw PostgreSQL reader, the CSV line builder and export pieces --------------------


def _odd_rows(staff_user):
    """Rows that exercise every conversion: NULLs, IPv6, negative and non-finite floats,
    -0.0, whole-second and microsecond timestamps, formula triggers, quotes, commas and
    line breaks in cells, unicode, a ciphertext moved from another row, findings."""
    from tracking.fields import Ciphertext
    from tracking.integrity import crypto
    from tracking.testing.factories import build_activity

    rows = make_activities(12)
    make_activity(
        user=staff_user,
        timestamp=datetime(2024, 3, 1, 8, 30, tzinfo=UTC),
        username='=cmd("x"), é',
        user_agent='Mozilla/5.0 (KHTML, like Gecko) "q"\r\nnext',
        forwarded_for="203.0.113.9, 10.0.0.1",
        endpoint="-1+2",
        city="@home\u2028Zürich",
        region="'quoted",
        tags=["=x", "b,c", 'q"', "a"],
        headers={"Authorization": "secret", "X": "=1", "nl": "a\r\nb", "q": '"'},
        params={"password": "p", "n": -5, "nested": {"token": "t", "ok": [1, -0.0]}, "é": "ü"},
        ip_address="2001:db8::1",
        remote_addr="::ffff:192.0.2.1",
        longitude=-3.7,
        latitude=-0.0,
        asn=0,
        status=None,
        duration=float("nan"),
        risk_score=float("-inf"),
        is_mobile=True,
    )
    make_activity(
        timestamp=datetime(2024, 3, 1, 8, 30, 0, 1, tzinfo=UTC),
        headers={},
        params={},
        tags=[],
        duration=-12.5,
        country="",
        ip_address=None,
        remote_addr=None,
        latitude=None,
        longitude=None,
        accuracy_radius=None,
        asn=None,
        user_agent="",
        forwarded_for="",
    )
    Finding.objects.create(
        activity_id=rows[3].pk,
        timestamp=rows[3].timestamp,
        detector="geo",
        tag="=t",
        score=0.4,
        reason='-reason, "quoted"',
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
    moved = build_activity(0)
    Activity.objects.bulk_create([moved])
    Activity.objects.filter(pk=moved.pk).update(
        headers=Ciphertext(crypto.encrypt({"a": 1}, f"tracking_activity.headers.{rows[0].pk}")),
        params=Ciphertext("not a ciphertext"),
    )
    return rows


@pytest.mark.parametrize("fmt", ["csv", "ndjson", "json"])
def test_raw_reader_is_identical_to_the_record_path(fmt, staff_user, caplog):
    from django.db import connection

    from tracking.export.records import encode_values
    from tracking.export.values import PayloadCache, iter_values, raw_reader_applies

    _odd_rows(staff_user)
    qs = Activity.objects.order_by("timestamp", "id")
    assert raw_reader_applies(qs) is (connection.vendor == "postgresql")
    expected = _reference(fmt)
    for chunk_size in (None, 5):
        payloads = PayloadCache()
        rows = iter_values(qs, chunk_size, payloads=payloads, raw=True)
        assert "".join(encode_values(rows, fmt, payloads=payloads)) == expected
    # the undecryptable row is exported without its payloads, with a warning
    assert "could not decrypt headers" in caplog.text
    assert "could not decrypt params" in caplog.text


def test_raw_reader_reads_nothing_for_an_empty_queryset():
    from tracking.export.values import iter_values

    make_activities(2)
    assert list(iter_values(Activity.objects.none(), raw=True)) == []
    assert list(iter_values(Activity.objects.filter(pk__in=[]), raw=True)) == []


def test_raw_reader_applies_the_querysets_filters(staff_user):
    from tracking.export.records import encode_values
    from tracking.export.values import PayloadCache, iter_values

    _odd_rows(staff_user)
    qs = (
        Activity.objects.filter(timestamp__gte=datetime(2024, 1, 1, tzinfo=UTC))
        .with_tags(["a"])
        .order_by("timestamp", "id")
    )
    assert qs.count() == 1
    payloads = PayloadCache()
    got = "".join(encode_values(iter_values(qs, payloads=payloads, raw=True), "ndjson"))
    assert got == "".join(stream_export(qs, "ndjson"))
    assert json.loads(got)["username"] == '=cmd("x"), é'


@pytest.mark.parametrize("fmt", ["csv", "ndjson", "json"])
@pytest.mark.parametrize("cuts", [(), (0,), (3, 3, 9), (1, 15)])
def test_pieces_concatenate_to_the_whole_export(fmt, cuts, staff_user):
    """How the parallel export assembles pieces (tracking/cli/export.py) gives the serial
    text for any split, empty pieces included."""
    from tracking.export.csvformat import csv_header
    from tracking.export.records import encode_piece
    from tracking.export.values import PayloadCache, iter_values

    _odd_rows(staff_user)
    payloads = PayloadCache()
    rows = list(iter_values(Activity.objects.order_by("timestamp", "id"), payloads=payloads))
    bounds = [0, *cuts, len(rows)]
    parts = [encode_piece(rows[a:b], fmt, payloads=payloads) for a, b in zip(bounds, bounds[1:])]
    assert sum(n for _, n in parts) == len(rows)
    texts = [text for text, _ in parts if text]
    if fmt == "csv":
        got = csv_header() + "".join(texts)
    elif fmt == "ndjson":
        got = "".join(texts)
    else:
        got = "[" + "".join(("\n" if i == 0 else ",\n") + t for i, t in enumerate(texts))
        got += "\n]\n"
    assert got == _reference(fmt)


def test_csv_fields_are_quoted_as_csv_writer_quotes_them():
    import itertools

    from tracking.export.csvformat import _csv_field

    alphabet = ["a", ",", '"', "\r", "\n", " ", "'", "=", "\t", "é", "\u2028", ";", "\x00"]
    for size in range(4):
        for chars in itertools.product(alphabet, repeat=size):
            cells = ["".join(chars), "x"]
            buf = io.StringIO()
            # Python 3.10's csv.writer refuses NUL, which later versions write as any plain
            # character: the reference writes \x01 (not in the alphabet) in its place.
            csv.writer(buf).writerow([c.replace("\x00", "\x01") for c in cells])
            expected = buf.getvalue().replace("\x01", "\x00")
            assert ",".join(_csv_field(c) for c in cells) + "\r\n" == expected


def test_export_decryptor_agrees_with_crypto(settings):
    from tracking.export.values import _Decryptor
    from tracking.integrity import crypto

    good = crypto.encrypt({"a": [1, "é"]}, "t.headers.1")
    kid = crypto.current_key_id()
    body = good.split(":", 2)[2]
    tokens = [
        good,
        good + "=",  # padding noise, ignored by the non-strict decoder
        good[:-4],  # truncated
        good.replace(body, body[:4]),  # shorter than a nonce
        f"v1:{kid}:!!!!",
        f"v1:{kid}:é",  # not ASCII
        f"v1:00000000:{body}",  # unknown key id
        f"v2:{kid}:{body}",
        "v1:nope",
        "",
    ]
    decrypt = _Decryptor()
    for token in tokens:
        for aad in ("t.headers.1", "t.headers.2"):
            try:
                expected = crypto.decrypt_bytes(token, aad)
            except crypto.DecryptionError:
                with pytest.raises(crypto.DecryptionError):
                    decrypt(token, aad)
            else:
                assert decrypt(token, aad) == expected
