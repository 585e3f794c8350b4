"""Finding 6: sizes. A total header budget and count; a spool byte cap with a counter and a
health alarm; spooled payloads encrypted; the writer's memory bounded when the spool is
unwritable."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test import RequestFactory, override_settings

from tracking.capture.tracker import get_tracker
from tracking.events import Event
from tracking.models import Activity
from tracking.pipeline import spool
from tracking.pipeline.ingest import ingest
from tracking.pipeline.writer import Writer
from tracking.redaction import HEADERS_OMITTED, redact_headers

rf = RequestFactory()
URL = "/t/hostile/"


def padded(n: int, size: int = 5000) -> dict:
    return {f"HTTP_X_PAD_{i}": chr(65 + i % 26) * size for i in range(n)}


@pytest.mark.django_db
def test_95_padded_headers_no_longer_store_half_a_megabyte(client):
    client.get(URL, HTTP_USER_AGENT="ua-kept", **padded(95))
    row = Activity.objects.get()
    total = sum(len(k) + len(v) for k, v in row.headers.items())
    assert total <= 32768 + 200
    assert row.headers["User-Agent"] == "ua-kept"  # forensics first
    assert "headers not recorded" in row.headers[HEADERS_OMITTED]
    with connection.cursor() as cur:
        cur.execute("SELECT headers FROM tracking_activity")
        assert len(cur.fetchone()[0]) < 60000  # the encrypted column, not 520 KB


@pytest.mark.parametrize(
    ("count", "size", "settings_", "kept_max"),
    [
        (300, 10, {}, 64),
        (10, 5000, {"TRACKING_MAX_HEADERS_TOTAL": 12000}, 3),
        (50, 100, {"TRACKING_MAX_HEADER_COUNT": 5}, 5),
    ],
)
def test_header_count_and_budget(count, size, settings_, kept_max):
    headers = {f"X-H{i}": "v" * size for i in range(count)}
    with override_settings(**settings_):
        out = redact_headers(headers)
        again = redact_headers(out)
    real = [k for k in out if k != HEADERS_OMITTED]
    assert len(real) <= kept_max
    assert out[HEADERS_OMITTED].startswith(f"[{count - len(real)} headers not recorded")
    assert again == out  # idempotent: imports are redacted again


def test_headers_under_the_budget_are_untouched():
    headers = {"Accept": "x", "User-Agent": "y"}
    assert redact_headers(headers) == headers


@pytest.fixture
def spool_dir(settings, tmp_path):
    settings.TRACKING_SPOOL_DIR = str(tmp_path / "spool")
    return tmp_path / "spool"


def test_spooled_events_are_encrypted(spool_dir):
    spool.append([Event(type="AUTH", username="secret-user", headers={"X": "zzz-marker"})])
    raw = next(spool_dir.glob("seg-*.ndjson")).read_bytes()
    assert b"secret-user" not in raw and b"zzz-marker" not in raw
    assert spool.decode_line(raw.splitlines()[0])["username"] == "secret-user"


def test_spool_without_encryption_keys_writes_nothing_in_clear(spool_dir):
    with override_settings(TRACKING_ENCRYPTION_KEYS=[]), pytest.raises(spool.SpoolError):
        spool.append([Event(type="AUTH", username="secret-user")])
    assert not list(spool_dir.glob("seg-*")) or b"secret-user" not in b"".join(
        p.read_bytes() for p in spool_dir.glob("seg-*")
    )


def test_a_tampered_spool_line_is_rejected_not_replayed(spool_dir, db):
    spool.append([Event(type="AUTH")])
    seg = next(spool_dir.glob("seg-*.ndjson"))
    line = seg.read_bytes()
    seg.write_bytes(line[:-6] + (b"A" if line[-6:-5] != b"A" else b"B") + line[-5:])
    result = spool.replay(ingest)
    assert result.corrupt == 1 and result.stored == 0


def test_old_plaintext_spool_lines_are_still_replayed(spool_dir, db):
    spool_dir.mkdir(parents=True)
    event = Event(type="AUTH").to_dict()
    (spool_dir / "seg-00000000000000000001-1-1.ndjson").write_text(
        json.dumps(event, default=str) + "\n"
    )
    assert spool.replay(ingest).stored == 1


@pytest.mark.parametrize("cap", [2000, 10000])
def test_spool_byte_cap_refuses_counts_and_alarms(spool_dir, cap, db):
    from tracking.health import collect

    with override_settings(TRACKING_SPOOL_MAX_BYTES=cap):
        accepted = refused = 0
        for _ in range(40):
            try:
                spool.append([Event(type="AUTH", headers={"X": "p" * 200})])
                accepted += 1
            except spool.SpoolFull:
                refused += 1
        st = spool.stats()
        assert refused and accepted and st["bytes"] <= cap
        assert st["refused_full"] == refused and st["max_bytes"] == cap
        data = collect()
        assert not data["healthy"]
        assert any("TRACKING_SPOOL_MAX_BYTES" in p for p in data["problems"])
    (spool_dir / spool.FULL_COUNT).unlink()
    assert spool.stats()["refused_full"] == 0


def test_writer_memory_is_bounded_when_the_spool_is_unwritable(settings):
    settings.TRACKING_QUEUE_SIZE = 50

    def broken(events):
        raise spool.SpoolError("read-only file system")

    writer = Writer(feed=ingest, keep=broken)
    for _ in range(10):
        writer._keep([Event(type="AUTH") for _ in range(20)])
    assert len(writer.retry) == 50
    assert writer.counters["dropped"] == 150


def test_recording_through_the_tracker_stays_within_the_budget():
    req = rf.get("/x/", **padded(95, 1000))
    event = get_tracker().build_event(req, None, activity_type="API", started=0.0)
    assert sum(len(k) + len(v) for k, v in event.headers.items()) <= 32768 + 200
