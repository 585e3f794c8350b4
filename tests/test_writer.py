"""The in-process writer: bursts larger than the queue lose nothing; stats are honest."""

from __future__ import annotations

import pytest

from tracking.events import Event
from tracking.models import Activity
from tracking.pipeline import writer
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
    for key in (
        "queue_depth",
        "enqueued",
        "written",
        "failed",
        "spooled",
        "sync_fallbacks",
        "dropped",
    ):
        assert key in st


def test_shutdown_flushes(settings):
    settings.TRACKING_FLUSH_INTERVAL = 5.0
    settings.TRACKING_BATCH_SIZE = 1000
    for i in range(10):
        writer.submit(Event(type="API", endpoint=f"/s/{i}"))
    writer.shutdown(10)
    assert Activity.objects.count() == 10


def test_fork_child_gets_its_own_writer():
    import os

    from django.db import connections

    parent = writer.get_writer()
    parent.ensure_started()
    pid = os.fork()
    if pid == 0:  # child: never touch the parent's database sockets
        code = 1
        try:
            for conn in connections.all(initialized_only=True):
                conn.connection = None
            child = writer.get_writer()
            ok = child is not parent and child.pid == os.getpid() and child.thread is None
            writer.submit(Event(type="API", endpoint="/forked"))
            ok = ok and child.thread.is_alive() and writer.flush(10)
            code = 0 if ok else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert Activity.objects.filter(endpoint="/forked").count() == 1


def test_durable_handoff_syncs_the_journal_before_acknowledging(settings, spool_dir):
    from tracking.pipeline import journal, spool

    settings.TRACKING_DURABLE_HANDOFF = True
    settings.TRACKING_FLUSH_INTERVAL = 30  # the writer does not write on its own meanwhile
    before = journal.stats()
    event = Event(type="API", endpoint="/durable")
    ActivityTracker().record(event, async_log=True)
    after = journal.stats()  # on disk when record() returned
    assert after["journal_journaled"] == before["journal_journaled"] + 1
    assert after["journal_syncs"] == before["journal_syncs"] + 1
    assert journal._where[event.id].synced == journal._where[event.id].written
    assert writer.flush(10)
    assert Activity.objects.filter(endpoint="/durable").count() == 1
    assert spool.stats()["events"] == 0 and journal.pending() == 0


def test_sync_handoff_writes_in_the_caller(settings):
    settings.TRACKING_ASYNC_HANDOFF = "sync"
    ActivityTracker().record(Event(type="API", endpoint="/sync"), async_log=True)
    assert Activity.objects.filter(endpoint="/sync").count() == 1


def test_record_errors_counted(client, monkeypatch):
    from tracking.capture import tracker

    before = writer.stats()["record_errors"]

    def broken(*a, **kw):
        raise RuntimeError("bug")

    monkeypatch.setattr(tracker.ActivityTracker, "build_event", broken)
    assert client.get("/t/rec/login/").status_code == 200
    assert writer.stats()["record_errors"] == before + 1


@pytest.mark.parametrize("gap", [0.0, 0.05], ids=["burst", "one-at-a-time"])
def test_a_full_batch_is_written_before_the_flush_interval(settings, gap):
    """Events arriving one at a time are taken by the writer as they come: the batch is full
    when held + queued events reach the batch size, not when the queue alone does."""
    settings.TRACKING_FLUSH_INTERVAL = 30.0
    settings.TRACKING_BATCH_SIZE = 5
    import time

    w = writer.get_writer()
    started = time.monotonic()
    for i in range(5):
        w.submit(Event(type="API", endpoint=f"/full/{i}"))
        time.sleep(gap)
    deadline = started + 10
    # The counter moves after the commit that makes the rows visible: wait for it.
    while w.stats()["written"] < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert w.stats()["written"] == 5 and Activity.objects.count() == 5
    assert time.monotonic() - started < 10  # not the 30 s interval


def test_a_partial_batch_is_written_after_the_flush_interval(settings):
    settings.TRACKING_FLUSH_INTERVAL = 0.2
    settings.TRACKING_BATCH_SIZE = 500
    import time

    w = writer.get_writer()
    for i in range(3):
        w.submit(Event(type="API", endpoint=f"/partial/{i}"))
    deadline = time.monotonic() + 10
    # The counter moves after the commit that makes the rows visible: wait for both.
    while w.stats()["written"] < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert w.stats()["written"] == 3
    assert Activity.objects.count() == 3


def test_a_filling_batch_does_not_wake_the_writer_per_event(settings, monkeypatch):
    """Events arriving while a batch fills are taken without a blocking ``queue.get`` each
    (every such get is a thread wake-up per request)."""
    settings.TRACKING_FLUSH_INTERVAL = 0.3
    settings.TRACKING_BATCH_SIZE = 500
    import queue as queue_module
    import threading
    import time

    w = writer.Writer()
    blocking_gets = []
    original = queue_module.Queue.get

    def counting_get(self, block=True, timeout=None):
        if block and self is w.queue:
            blocking_gets.append(timeout)
        return original(self, block, timeout)

    monkeypatch.setattr(queue_module.Queue, "get", counting_get)
    result = {}

    def take():
        result["batch"] = w._take()

    thread = threading.Thread(target=take)
    thread.start()
    for i in range(20):
        w.queue.put_nowait(Event(type="API", endpoint=f"/e/{i}"))
        time.sleep(0.005)
    thread.join(5)
    batch, stop = result["batch"]
    assert len(batch) == 20 and not stop
    assert len(blocking_gets) == 1  # only while the queue was empty


def test_the_writer_feeds_the_function_it_was_given_and_keeps_what_failed():
    """The writer knows only its feed and its keeper: a batch the feed could not write goes
    to ``keep``; when that fails too, the batch waits in memory for the next round."""
    fed, kept = [], []

    def feed(batch, assume_new):
        fed.append((len(batch), assume_new))
        if any(e.endpoint == "/fail" for e in batch):
            raise RuntimeError("feed down")
        return {"written": len(batch)}

    def keep(batch):
        if kept:
            raise OSError("disk full")
        kept.append(len(batch))

    w = writer.Writer(feed=feed, keep=keep, jobs=[])
    w._write([Event(type="API", endpoint="/ok")], assume_new=True)
    w._write([Event(type="API", endpoint="/fail")])
    w._write([Event(type="API", endpoint="/fail")])
    assert fed == [(1, True), (1, False), (1, False)]
    assert kept == [1] and [e.endpoint for e in w.retry] == ["/fail"]
    st = w.stats()
    assert (st["written"], st["failed"], st["spooled"]) == (1, 2, 1)


def test_writer_runs_its_registered_jobs_and_flush_waits_for_them():
    class Job:
        def __init__(self):
            self.rounds = []
            self.todo = 2

        def run(self, w, *, stopping):
            self.rounds.append(stopping)
            self.todo = max(0, self.todo - 1)

        def pending(self):
            return self.todo > 0

    w = writer.Writer(feed=lambda batch, assume_new: {}, keep=lambda batch: None, jobs=[Job])
    job = w.job(Job)
    assert w.flush(10)  # woken until the job reports nothing pending
    assert job.todo == 0 and job.rounds
    w.stop(10)
    assert job.rounds[-1] is True  # the last round tells the jobs the writer stops
