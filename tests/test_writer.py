"""The in-process writer: bursts larger than the queue lose nothing; stats are honest."""

from __future__ import annotations

import pytest

from tracking import writer
from tracking.events import Event
from tracking.models import Activity
from tracking.services import ActivityTracker

pytestmark = pytest.mark.django_db(transaction=True)


def test_burst_larger_than_queue_loses_nothing(settings):
    settings.TRACKING_QUEUE_SIZE = 5
    settings.TRACKING_BATCH_SIZE = 3
    tracker = ActivityTracker()
    events = [Event(type="API", endpoint=f"/e/{i}", ip_address="81.2.69.10") for i in range(60)]
    for e in events:
        tracker.record(e, async_log=True)
    assert writer.flush(20)
    assert Activity.objects.count() == 60
    st = writer.stats()
    assert st["dropped"] == 0
    assert st["enqueued"] + st["sync_fallbacks"] == 60
    assert st["sync_fallbacks"] > 0
    assert st["queue_depth"] == 0 and st["queue_size"] == 5


def test_stats_shape():
    st = writer.stats()
    for key in ("queue_depth", "enqueued", "written", "failed", "spooled", "sync_fallbacks", "dropped"):
        assert key in st


def test_shutdown_flushes(settings):
    settings.TRACKING_FLUSH_INTERVAL = 5.0
    settings.TRACKING_BATCH_SIZE = 1000
    for i in range(10):
        writer.submit(Event(type="API", endpoint=f"/s/{i}"))
    writer.shutdown(10)
    assert Activity.objects.count() == 10
