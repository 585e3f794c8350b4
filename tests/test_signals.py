"""tracking.signals: sent once, after the commit, in whichever process writes (request path,
writer thread, Celery task, import); a failing receiver never loses or rolls back a record."""

from __future__ import annotations

import json
import threading
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import transaction

from tests.delivery_helpers import failed_logins, flagged_event, plain_event
from tracking import signals
from tracking.delivery import hooks
from tracking.detection.review import review
from tracking.health import collect
from tracking.models import Activity
from tracking.pipeline import writer
from tracking.pipeline.ingest import ingest
from tracking.services import ActivityTracker

pytestmark = pytest.mark.django_db(transaction=True)


class Recorder:
    """Connects to a signal; records each call with what the database held at that moment."""

    def __init__(self, signal):
        self.calls: list[dict] = []
        self.signal = signal
        signal.connect(self.receive, dispatch_uid=f"recorder-{id(self)}")

    def receive(self, sender, **kwargs):
        assert sender is Activity
        conn = transaction.get_connection()
        kwargs["_in_atomic"] = conn.in_atomic_block
        kwargs["_thread"] = threading.current_thread().name
        activities = kwargs.get("activities") or [kwargs.get("activity")]
        kwargs["_stored"] = Activity.objects.filter(id__in=[a.id for a in activities]).count()
        self.calls.append(kwargs)

    def close(self):
        self.signal.disconnect(dispatch_uid=f"recorder-{id(self)}")


@pytest.fixture
def recorded():
    rec = Recorder(signals.activity_recorded)
    yield rec
    rec.close()


@pytest.fixture
def flagged():
    rec = Recorder(signals.activity_flagged)
    yield rec
    rec.close()


def test_recorded_once_after_commit_in_the_request_path(recorded):
    result = ingest([plain_event(), plain_event()])
    assert len(recorded.calls) == 1
    call = recorded.calls[0]
    assert sorted(str(a.id) for a in call["activities"]) == sorted(result.ids)
    assert call["_in_atomic"] is False and call["_stored"] == 2


def test_nothing_is_sent_for_a_rolled_back_transaction(recorded):
    with pytest.raises(RuntimeError), transaction.atomic():
        ingest([plain_event()])
        raise RuntimeError("the caller's transaction fails")
    assert recorded.calls == [] and not Activity.objects.exists()
    ingest([plain_event()])
    assert len(recorded.calls) == 1


def test_flagged_carries_the_findings(recorded, flagged):
    ingest(failed_logins(12))
    acts = Activity.objects.filter(flagged=True)
    assert acts.exists()
    assert sorted(str(c["activity"].id) for c in flagged.calls) == sorted(str(a.id) for a in acts)
    for call in flagged.calls:
        assert call["_in_atomic"] is False
        assert call["findings"] and all(
            f.activity_id == call["activity"].id for f in call["findings"]
        )
    assert len(recorded.calls) == 1 and len(recorded.calls[0]["activities"]) == 12


def test_a_failing_receiver_loses_nothing_and_is_counted(recorded):
    def broken(sender, **kwargs):
        raise ValueError("receiver bug")

    signals.activity_recorded.connect(broken, dispatch_uid="broken")
    signals.activity_flagged.connect(broken, dispatch_uid="broken-flagged")
    before = hooks.stats()["receiver_failures"]
    try:
        result = ingest([plain_event(), flagged_event()])
    finally:
        signals.activity_recorded.disconnect(dispatch_uid="broken")
        signals.activity_flagged.disconnect(dispatch_uid="broken-flagged")
    assert result.stored == 2 and Activity.objects.count() == 2
    assert len(recorded.calls) == 1  # the other receivers still ran
    assert hooks.stats()["receiver_failures"] == before + 2
    assert any("receiver bug" in w for w in collect()["warnings"])


def test_writer_thread(settings, recorded):
    settings.TRACKING_ASYNC_HANDOFF = "thread"
    tracker = ActivityTracker()
    events = [plain_event() for _ in range(5)]
    for event in events:
        tracker.record(event, async_log=True)
    assert writer.flush(20)
    ids = sorted(str(a.id) for call in recorded.calls for a in call["activities"])
    assert ids == sorted(e.id for e in events)  # each once
    assert all(c["_thread"] != threading.main_thread().name for c in recorded.calls)
    assert all(c["_stored"] == len(c["activities"]) for c in recorded.calls)


def test_celery_task(recorded, flagged):
    from tracking.pipeline.tasks import ingest_events

    payload = [plain_event().to_dict(), flagged_event().to_dict()]
    ingest_events.apply(args=[payload]).get()
    ingest_events.apply(args=[payload]).get()  # redelivery: nothing new, nothing sent
    assert len(recorded.calls) == 1
    assert sorted(str(a.id) for a in recorded.calls[0]["activities"]) == sorted(
        e["id"] for e in payload
    )
    assert [str(c["activity"].id) for c in flagged.calls] == [payload[1]["id"]]


def test_import(tmp_path, recorded, flagged):
    records = [
        {"id": "8f9d4f7e-0000-4000-8000-000000000001", "timestamp": "2026-11-01T10:00:00+00:00", "type": "API", "username": "bob"},
        {"id": "8f9d4f7e-0000-4000-8000-000000000002", "timestamp": "2026-11-01T10:01:00+00:00", "type": "PAYMENT", "username": "eve", "flagged": True, "tags": ["fraud"], "severity": "high", "risk_score": 0.9},
    ]  # fmt: skip
    path = tmp_path / "in.ndjson"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    call_command("tracking", "import", str(path), "--quiet", stdout=StringIO(), stderr=StringIO())
    ids = sorted(str(a.id) for call in recorded.calls for a in call["activities"])
    assert ids == sorted(r["id"] for r in records)
    assert [str(c["activity"].id) for c in flagged.calls] == [records[1]["id"]]


def test_reviewed(django_user_model):
    user = django_user_model.objects.create_user("reviewer", is_staff=True)
    ingest([flagged_event()])
    # Creating a staff account is itself recorded (an ACCOUNT activity).
    act = Activity.objects.exclude(type="ACCOUNT").get()
    rec = Recorder(signals.activity_reviewed)
    try:
        review(act, by=user, review_status="confirmed", note="seen")
        review(act, by=user, review_status="confirmed")  # no change: nothing sent
    finally:
        rec.close()
    assert len(rec.calls) == 1
    call = rec.calls[0]
    assert call["activity"].review_status == "confirmed" and call["_in_atomic"] is False
    assert call["review"].action == "confirmed" and call["review"].reviewer_username == "reviewer"
