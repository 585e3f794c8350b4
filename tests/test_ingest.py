"""The batch step: idempotent, enriching, redacting, isolating bad events, maintaining rollups."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

import pytest

from tracking.events import Event
from tracking.integrity import macs as integrity
from tracking.models import Activity, Rollup
from tracking.pipeline.ingest import ingest
from tracking.pipeline.spool import decode_line

UTC = dt_timezone.utc

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)


def ev(**kw) -> Event:
    base = {
        "type": "AUTH",
        "timestamp": T0,
        "ip_address": "81.2.69.10",
        "endpoint": "/login/",
        "method": "POST",
        "status": 200,
        "duration": 12.5,
    }
    base.update(kw)
    return Event(**base)


def test_stores_enriches_and_macs():
    res = ingest([ev(user_agent="curl/8.0", params={"query": {"password": "p"}})])
    assert res.stored == 1 and res.failed == 0
    a = Activity.objects.get(id=res.ids[0])
    assert (a.country, a.city, a.asn, a.accuracy_radius) == ("GB", "London", 64600, 10)
    assert a.is_bot and a.browser.startswith("curl")
    assert a.params == {"query": {"password": "[REDACTED]"}}
    assert integrity.row_ok(a)


def test_idempotent_on_ids():
    e = ev()
    assert ingest([e, e]).stored == 1
    again = ingest([e])
    assert (again.stored, again.duplicates) == (0, 1)
    assert Activity.objects.count() == 1


def test_user_resolved_by_id_or_username(plain_user):
    res = ingest(
        [ev(user_id=plain_user.pk, username="whatever"), ev(username="plain"), ev(username="ghost")]
    )
    rows = {str(a.id): a for a in Activity.objects.all()}
    assert [rows[i].user_id for i in res.ids].count(plain_user.pk) == 2
    ghost = Activity.objects.get(username="ghost")
    assert ghost.user_id is None


def test_country_only_record_kept_as_such():
    res = ingest([ev(ip_address="2.16.1.5")])
    a = Activity.objects.get(id=res.ids[0])
    assert a.country == "GB" and a.city == "" and a.accuracy_radius == 200


def test_private_addresses_not_looked_up():
    res = ingest([ev(ip_address="10.1.2.3"), ev(ip_address="127.0.0.1")])
    assert res.stored == 2
    assert set(Activity.objects.values_list("country", flat=True)) == {""}


def test_prefilled_enrichment_kept():
    res = ingest([ev(enrichment={"country": "JP", "city": "Tokyo", "asn": 1, "device": "PC"})])
    a = Activity.objects.get(id=res.ids[0])
    assert (a.country, a.city, a.asn, a.device) == ("JP", "Tokyo", 1, "PC")


def test_verdict_merged():
    res = ingest(
        [
            ev(
                verdict={
                    "flagged": True,
                    "tags": ["imported"],
                    "risk_score": 0.9,
                    "severity": "high",
                    "review_status": "confirmed",
                }
            )
        ]
    )
    a = Activity.objects.get(id=res.ids[0])
    assert a.flagged and "imported" in a.tags and a.risk_score == 0.9
    assert a.severity == "high" and a.review_status == "confirmed"


def test_bad_event_isolated_others_stored(spool_dir):
    good = [ev(), ev(timestamp=T0 + timedelta(seconds=1))]
    bad = {"type": "AUTH", "timestamp": "not a time", "id": str(uuid.uuid4())}
    res = ingest([good[0], bad, good[1], {"id": "nope", "type": "X"}])
    assert res.stored == 2 and res.rejected == 2 and res.failed == 2
    assert Activity.objects.count() == 2
    # ingest returns what it could not write, with the reason; it keeps no file itself.
    assert [item for item, _ in res.dead_letters] == [bad, {"id": "nope", "type": "X"}]
    assert "not a time" in res.dead_letters[0][1] and "nope" in res.dead_letters[1][1]
    assert not (spool_dir / "rejected.ndjson").exists()


def test_store_keeps_rejected_events_in_the_dead_letter_file(spool_dir):
    from tracking.pipeline.handoff import store

    bad = {"type": "AUTH", "timestamp": "not a time", "id": str(uuid.uuid4())}
    res = store([ev(), bad, {"id": "nope", "type": "X"}], source="import")
    assert res.stored == 1 and res.rejected == 2
    lines = (spool_dir / "rejected.ndjson").read_text().splitlines()
    dead = [decode_line(json.loads(line)["event"].encode()) for line in lines]
    assert all(json.loads(line)["event"].startswith("v1:") for line in lines)  # encrypted
    assert {d.get("timestamp") for d in dead} >= {"not a time"}
    assert "nope" in {d.get("id") for d in dead}


def test_insert_failure_falls_back_per_event(spool_dir):
    from django.db import DataError

    from tracking.testing.faults import database_fault, inserts_activities

    def poisoned(sql, params):
        if "/poison/" in repr(params):
            raise DataError("poisoned row")

    with database_fault(poisoned, match=inserts_activities):
        res = ingest([ev(), ev(endpoint="/poison/"), ev()])
    assert res.stored == 2 and res.rejected == 1
    assert "poisoned row" in res.dead_letters[0][1]
    assert set(Activity.objects.values_list("endpoint", flat=True)) == {"/login/"}


def test_rollups_maintained():
    ingest([ev(duration=10.0), ev(duration=30.0, ip_address="90.80.1.4"), ev(duration=20.0)])
    ingest([ev(duration=5.0)])
    gb = Rollup.objects.get(country="GB", type="AUTH")
    assert gb.bucket == T0.replace(minute=0)
    assert (gb.count, gb.duration_count, gb.duration_sum) == (3, 3, 35.0)
    assert (gb.duration_min, gb.duration_max) == (5.0, 20.0)
    fr = Rollup.objects.get(country="FR")
    assert (fr.count, fr.duration_min, fr.duration_max) == (1, 30.0, 30.0)


def test_timestamps_normalised_to_utc_mac_verifies():
    from datetime import timezone

    ts = datetime(2026, 3, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    res = ingest([ev(timestamp=ts)])
    a = Activity.objects.get(id=res.ids[0])
    assert a.timestamp == ts and integrity.row_ok(a)


def test_dict_events_accepted():
    res = ingest([ev().to_dict()])
    assert res.stored == 1


def test_record_many_batches():
    from tracking.services import ActivityTracker

    res = ActivityTracker().record_many((ev() for _ in range(7)), batch_size=3)
    assert res.stored == 7 and Activity.objects.count() == 7


def test_built_row_equals_the_one_the_model_constructor_builds():
    """build_activity's constructor shortcut leaves the same instance state as
    ``Activity(**values)``: every field, the fresh containers and a new ModelState."""
    from tracking.pipeline.rows import _new_activity

    values = {"id": uuid.uuid4(), "timestamp": datetime.now(UTC), "type": "API", "username": "x"}
    fast, slow = _new_activity(**values), Activity(**values)
    for f in Activity._meta.concrete_fields:
        assert getattr(fast, f.attname) == getattr(slow, f.attname), f.attname
    assert fast._state.adding and fast._state.db is None
    other = _new_activity(**{**values, "id": uuid.uuid4()})
    assert other.tags is not fast.tags and other.headers is not fast.headers


def test_constructor_shortcut_defers_to_init_signal_listeners():
    from django.db.models.signals import post_init

    from tracking.pipeline.rows import _new_activity

    seen = []

    def listener(sender, instance, **kwargs):
        seen.append(instance)

    post_init.connect(listener, sender=Activity)
    try:
        act = _new_activity(id=uuid.uuid4(), timestamp=datetime.now(UTC), type="API")
    finally:
        post_init.disconnect(listener, sender=Activity)
    assert seen == [act]
    # A computed default (the id) not given: the model computes it, as it always did.
    assert _new_activity(timestamp=datetime.now(UTC), type="API").id is not None


@pytest.mark.parametrize("error", ["database", "bug"])
def test_a_failing_detection_stores_the_batch_without_its_verdicts(monkeypatch, caplog, error):
    """Detection shares the batch's transaction (no savepoint of its own): when it fails,
    after a query or after setting verdicts, the batch is written again without it."""
    from django.db import connection

    from tracking.detection import runner as detection
    from tracking.models import Finding, Profile

    real = detection._detect_batch

    def failing(acts):
        real(acts)  # profiles saved, verdicts applied...
        for a in acts:
            a.flagged, a.tags, a.risk_score = True, ["boom"], 0.99
        if error == "database":
            # A real database error (a NOT NULL violation): on PostgreSQL the transaction
            # can take no further statement.
            with connection.cursor() as cur:
                cur.execute(
                    "INSERT INTO tracking_counter (namespace, key, count) VALUES (NULL, NULL, NULL)"
                )
        raise RuntimeError("detector bug")

    monkeypatch.setattr(detection, "_detect_batch", failing)
    res = ingest([ev(username="alice"), ev(username="bob", status=401)])
    assert res.stored == 2 and res.rejected == 0
    rows = list(Activity.objects.all())
    assert len(rows) == 2
    assert all(not a.flagged and a.tags == [] and a.risk_score == 0 for a in rows)
    assert all(integrity.row_ok(a) for a in rows)
    assert not Finding.objects.exists() and not Profile.objects.exists()  # rolled back
    assert "detection failed for a batch; stored without findings" in caplog.text
    assert Rollup.objects.get(type="AUTH").count == 2


def test_imported_verdicts_survive_a_failing_detection(monkeypatch):
    from tracking.detection import runner as detection

    def failing(acts):
        raise RuntimeError("detector bug")

    monkeypatch.setattr(detection, "_detect_batch", failing)
    ingest([ev(verdict={"flagged": True, "tags": ["imported"], "risk_score": 0.7})])
    a = Activity.objects.get()
    assert a.flagged and a.tags == ["imported"] and a.risk_score == 0.7


def test_a_small_batch_writes_in_one_round_trip_on_postgresql(monkeypatch):
    """INSERT and rollup upserts of a synchronous request go out together (psycopg's pipeline
    mode on PostgreSQL); an error among them still surfaces as Django's exception at once, so
    a duplicate id takes the idempotent path and loses nothing else."""
    from contextlib import contextmanager

    from django.db import connection

    from tracking.pipeline import ingest as mod

    used = []
    real = mod._pipelined

    @contextmanager
    def spy(rows):
        with real(rows):
            used.append(getattr(connection.connection, "_pipeline", None) is not None)
            yield

    monkeypatch.setattr(mod, "_pipelined", spy)
    first = ev()
    assert ingest([first], assume_new=True).stored == 1
    assert used == [connection.vendor == "postgresql"]
    again = ingest([ev(), Event(**{**first.to_dict(), "timestamp": T0}), ev()], assume_new=True)
    assert (again.stored, again.duplicates) == (2, 1)
    assert Activity.objects.count() == 3
    assert Rollup.objects.get(type="AUTH").count == 3


def test_findings_an_event_carries_are_stored_with_its_row():
    """An exported record's findings (``verdict["findings"]``) are written by ``ingest`` in
    the row's transaction: there is no other write path for findings."""
    from tracking.models import Finding

    verdict = {
        "flagged": True,
        "findings": [
            {"detector": "manual", "tag": "manual", "score": 0.8, "severity": "high"},
            {"detector": "manual", "tag": "manual", "score": 0.1},  # the same pair once
            {"detector": "odd", "tag": "odd", "score": "x", "severity": "bogus"},
        ],
    }
    res = ingest([ev(verdict=verdict)], detect=False)
    rows = sorted(Finding.objects.filter(activity_id=res.ids[0]), key=lambda f: f.detector)
    assert [(f.detector, f.score, f.severity, f.flag) for f in rows] == [
        ("manual", 0.8, "high", True),
        ("odd", 0.0, "low", True),
    ]
    assert all(f.evidence == {"imported": True} for f in rows)
