"""A batch published to Celery stays journaled until the database holds its events, and is
published again (or stored here) when the broker lost it: tracking.pipeline.confirm and the
writer's ``Confirming`` job, against the real Redis."""

from __future__ import annotations

import base64
import json
import os
import time
import uuid

import pytest

from tracking.events import Event
from tracking.models import Activity
from tracking.pipeline import confirm, handoff, journal, writer

REDIS_URL = os.environ.get("TRACKING_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- the record (no I/O) ------------------------------------------------------------------
def test_a_batch_is_due_after_the_first_check_delay_and_gone_once_stored():
    clock = Clock()
    sent = confirm.Pending(limit=100, clock=clock)
    assert sent.add(["a", "b", "c"], "batch:m1") == []
    assert len(sent) == 3 and sent.holds("b") and not sent.holds("z")
    assert sent.due() == []
    clock.now += confirm.FIRST_CHECK
    (batch,) = sent.due()
    assert sorted(sent.stored(batch, {"a", "c", "other"})) == ["a", "c"]
    assert batch.ids == {"b"} and len(sent) == 1 and not sent.holds("a")
    assert sent.stored(batch, {"b"}) == ["b"]
    assert len(sent) == 0 and sent.due(everything=True) == []


def test_a_batch_missing_events_is_overdue_only_after_the_timeout_and_rechecked_meanwhile():
    clock = Clock()
    sent = confirm.Pending(limit=100, clock=clock)
    sent.add(["a"], "batch:m1")
    clock.now += confirm.FIRST_CHECK
    (batch,) = sent.due()
    assert not sent.overdue(batch, 120)
    sent.later(batch)
    assert sent.due() == [] and sent.due(everything=True) == [batch]
    clock.now += confirm.RECHECK
    assert sent.due() == [batch]
    clock.now = 1000.0 + 120
    assert sent.overdue(batch, 120)
    sent.republished(batch)
    assert batch.attempts == 2 and not sent.overdue(batch, 120) and sent.due() == []
    assert sent.forget(batch) == ["a"] and len(sent) == 0


def test_beyond_the_limit_the_oldest_batches_are_let_go():
    sent = confirm.Pending(limit=4, clock=Clock())
    assert sent.add(["a", "b"], "m1") == []
    assert sent.add(["c", "d"], "m2") == []
    assert sorted(sent.add(["e"], "m3")) == ["a", "b"]
    assert len(sent) == 3 and not sent.holds("a") and sent.holds("e")
    # A single batch above the limit is kept: letting it go would release it unpublished.
    big = confirm.Pending(limit=1, clock=Clock())
    assert big.add(["x", "y"], "m") == [] and len(big) == 2


# --- the job, against Redis and the database ------------------------------------------------
@pytest.fixture
def celery_app(settings, spool_dir):
    from celery import Celery

    import tracking.pipeline.tasks  # noqa: F401 - registers the shared task on the new app

    queue = f"tracking-confirm-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    app = Celery("tracking-tests", broker=REDIS_URL, set_as_current=True)
    app.conf.task_default_queue = queue
    settings.TRACKING_CELERY_APP = app
    settings.TRACKING_CELERY_QUEUE = queue
    settings.TRACKING_ASYNC_HANDOFF = "celery"
    settings.TRACKING_CELERY_CONFIRM_AFTER = 120
    handoff._broker["down_until"] = 0.0
    yield app
    import redis

    redis.Redis.from_url(REDIS_URL).delete(queue)
    handoff._broker["down_until"] = 0.0


def _redis():
    import redis

    return redis.Redis.from_url(REDIS_URL)


def _queued_items(app) -> list[list]:
    """The task arguments of the messages waiting in the queue (oldest last)."""
    out = []
    for raw in _redis().lrange(app.conf.task_default_queue, 0, -1):
        (items,), _kwargs, _embed = json.loads(base64.b64decode(json.loads(raw)["body"]))
        out.append(items)
    return out


def _journaled(n: int, prefix: str) -> list[Event]:
    events = [Event(type="API", endpoint=f"/{prefix}/{i}/") for i in range(n)]
    for e in events:
        assert journal.append(e, keep_json=True)
    return events


def _published(job: handoff.Confirming, events: list[Event]) -> str:
    """What the writer's feed does for a batch: publish it, hand it to the job, release what
    the job does not hold."""
    assert handoff._publish(events)
    handoff._release(events)
    return job.sent.batches[-1].message


@pytest.fixture
def job(celery_app, monkeypatch):
    """The job of this process's writer, on a clock the test moves."""
    w = writer.get_writer()
    found = w.job(handoff.Confirming)
    assert found is not None
    found.sent = confirm.Pending(limit=1000, clock=Clock())
    yield found
    journal.release_ids(list(found.sent.ids))
    found.sent = confirm.Pending(limit=1000)


@pytest.mark.django_db(transaction=True)
def test_published_lines_stay_journaled_until_the_database_holds_the_events(celery_app, job):
    from tracking.pipeline.tasks import ingest_events

    before = journal.pending()
    events = _journaled(30, "kept")
    message = _published(job, events)
    assert journal.pending() == before + 30  # published, not yet stored: still journaled
    assert all(journal.json_of(e) is None for e in events)  # the JSON went with the message
    assert _queued_items(celery_app) == [[message]]

    w = writer.get_writer()
    assert w.stats()["awaiting_confirmation"] == 30
    job.run(w, stopping=False)
    assert journal.pending() == before + 30  # not due yet: no query made
    job.sent.clock.now += confirm.FIRST_CHECK
    job.run(w, stopping=False)
    assert journal.pending() == before + 30 and len(job.sent) == 30  # due, not stored

    assert ingest_events.apply(args=[[message]]).get()["stored"] == 30  # a worker took it
    job.sent.clock.now += confirm.RECHECK
    confirmed = w.stats().get("confirmed", 0)
    job.run(w, stopping=False)
    assert len(job.sent) == 0 and journal.pending() == before
    assert w.stats()["confirmed"] == confirmed + 30
    assert w.stats()["awaiting_confirmation"] == 0


@pytest.mark.django_db(transaction=True)
def test_a_batch_the_broker_lost_is_published_again_once_the_queue_is_empty(celery_app, job):
    from tracking.pipeline.tasks import ingest_events

    events = _journaled(20, "lost")
    message = _published(job, events)
    other = _published(job, _journaled(5, "backlog"))
    # The broker loses the first message (Redis: popped by a worker that was then killed).
    _redis().rpop(celery_app.conf.task_default_queue)
    assert _queued_items(celery_app) == [[other]]

    w = writer.get_writer()
    job.sent.clock.now += 120
    job.run(w, stopping=False)
    # A message still waits in the queue: a backlog may hold the batch, so nothing is sent.
    assert _queued_items(celery_app) == [[other]]

    _redis().rpop(celery_app.conf.task_default_queue)
    ingest_events.apply(args=[[other]]).get()
    republished = w.stats().get("republished", 0)
    job.sent.clock.now += confirm.RECHECK
    job.run(w, stopping=False)
    assert _queued_items(celery_app) == [[message]]  # the same sealed message, once
    assert w.stats()["republished"] == republished + 20
    (batch,) = job.sent.batches
    assert batch.attempts == 2 and len(batch.ids) == 20

    assert ingest_events.apply(args=[[message]]).get()["stored"] == 20
    job.sent.clock.now += confirm.FIRST_CHECK
    job.run(w, stopping=False)
    assert len(job.sent) == 0
    assert Activity.objects.filter(endpoint__startswith="/lost/").count() == 20


@pytest.mark.django_db(transaction=True)
def test_after_the_last_attempt_the_publishing_process_stores_the_batch(celery_app, job):
    events = _journaled(12, "stubborn")
    _published(job, events)
    w = writer.get_writer()
    for _attempt in range(confirm.MAX_ATTEMPTS - 1):
        _redis().delete(celery_app.conf.task_default_queue)  # lost again
        job.sent.clock.now += 120
        job.run(w, stopping=False)
        assert len(_queued_items(celery_app)) == 1
    _redis().delete(celery_app.conf.task_default_queue)
    before = journal.pending()
    job.sent.clock.now += 120
    job.run(w, stopping=False)
    assert _queued_items(celery_app) == []  # not published a fourth time: stored here
    assert Activity.objects.filter(endpoint__startswith="/stubborn/").count() == 12
    assert len(job.sent) == 0 and journal.pending() == before - 12


@pytest.mark.django_db(transaction=True)
def test_a_lost_batch_is_stored_here_when_the_broker_is_down(celery_app, job, settings):
    events = _journaled(7, "nobroker")
    _published(job, events)
    _redis().delete(celery_app.conf.task_default_queue)
    from celery import Celery

    down = Celery("tracking-tests-down", broker="redis://127.0.0.1:1/0")
    down.conf.task_default_queue = celery_app.conf.task_default_queue
    down.conf.broker_connection_timeout = 1
    settings.TRACKING_CELERY_APP = down
    job.sent.clock.now += 120
    job.run(writer.get_writer(), stopping=False)
    assert Activity.objects.filter(endpoint__startswith="/nobroker/").count() == 7
    assert len(job.sent) == 0


@pytest.mark.django_db(transaction=True)
def test_stored_events_are_confirmed_when_the_writer_stops_the_others_stay_journaled(
    celery_app, job
):
    from tracking.pipeline.tasks import ingest_events

    stored = _journaled(4, "stopping-stored")
    message = _published(job, stored)
    missing = _journaled(3, "stopping-missing")
    _published(job, missing)
    ingest_events.apply(args=[[message]]).get()
    before = journal.pending()
    started = time.monotonic()
    job.run(writer.get_writer(), stopping=True)
    # The stored batch is released at once; the other is waited for SETTLE seconds, then left
    # in the journal for the next process to replay (never published again on the way out).
    assert journal.pending() == before - 4
    assert sorted(job.sent.ids) == sorted(e.id for e in missing)
    assert time.monotonic() - started >= handoff.Confirming.SETTLE
    assert len(_queued_items(celery_app)) == 2  # the two publications, nothing added


@pytest.mark.django_db(transaction=True)
def test_beyond_the_limit_the_oldest_published_lines_are_released_and_counted(celery_app, job):
    job.sent.limit = 10
    before = journal.pending()
    w = writer.get_writer()
    let_go = w.stats().get("unconfirmed", 0)
    first = _journaled(8, "limit-a")
    _published(job, first)
    _published(job, _journaled(8, "limit-b"))
    assert w.stats()["unconfirmed"] == let_go + 8
    assert journal.pending() == before + 8 and not any(job.sent.holds(e.id) for e in first)


@pytest.mark.django_db(transaction=True)
def test_confirmation_off_releases_on_publish(celery_app, job, settings):
    settings.TRACKING_CELERY_CONFIRM_AFTER = 0
    before = journal.pending()
    _published_off = _journaled(6, "off")
    assert handoff._publish(_published_off)
    handoff._release(_published_off)
    assert journal.pending() == before and len(job.sent) == 0


@pytest.mark.django_db(transaction=True)
def test_the_writer_thread_confirms_what_a_worker_stored(celery_app, settings, monkeypatch):
    """End to end: ``async_log`` events published by the writer thread stay journaled, the
    broker loses the message, the writer publishes it again, a worker stores it, and the
    journal lets the lines go."""
    from tracking.pipeline.tasks import ingest_events
    from tracking.services import ActivityTracker

    settings.TRACKING_CELERY_CONFIRM_AFTER = 0.5
    settings.TRACKING_FLUSH_INTERVAL = 0.05
    monkeypatch.setattr(confirm, "FIRST_CHECK", 0.2)
    monkeypatch.setattr(confirm, "RECHECK", 0.2)
    before = journal.pending()
    tracker = ActivityTracker()
    events = [Event(type="API", endpoint=f"/e2e/{i}/") for i in range(40)]
    for e in events:
        tracker.record(e, async_log=True)
    assert writer.flush(10)
    queue = celery_app.conf.task_default_queue
    deadline = time.monotonic() + 10
    while not _redis().llen(queue) and time.monotonic() < deadline:
        time.sleep(0.05)
    first = _queued_items(celery_app)
    assert first and journal.pending() >= before + 40
    _redis().delete(queue)  # lost

    deadline = time.monotonic() + 15
    while not _redis().llen(queue) and time.monotonic() < deadline:
        time.sleep(0.05)
    again = _queued_items(celery_app)
    assert sorted(m for items in again for m in items) == sorted(m for i in first for m in i)
    _redis().delete(queue)
    for items in again:
        ingest_events.apply(args=[items]).get()
    deadline = time.monotonic() + 10
    while journal.pending() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert journal.pending() == before
    assert Activity.objects.filter(endpoint__startswith="/e2e/").count() == 40


AMQP_URL = os.environ.get("TRACKING_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")


@pytest.mark.django_db
@pytest.mark.parametrize("broker", [REDIS_URL, AMQP_URL], ids=["redis", "rabbitmq"])
def test_the_queue_length_on_both_brokers(settings, spool_dir, broker):
    from celery import Celery

    from tracking.pipeline import tasks

    queue = f"tracking-queued-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    app = Celery("tracking-tests-queued", broker=broker)
    app.conf.task_default_queue = queue
    settings.TRACKING_CELERY_APP = app
    settings.TRACKING_CELERY_QUEUE = queue
    try:
        assert tasks.queued() == 0  # never declared: nothing waits (Redis: no list at all)
        tasks.publish([Event(type="API", endpoint="/q/1/")])
        tasks.publish([Event(type="API", endpoint="/q/2/")])
        deadline = time.monotonic() + 5
        while tasks.queued() < 2 and time.monotonic() < deadline:
            time.sleep(0.05)  # RabbitMQ counts a message a moment after it was confirmed
        assert tasks.queued() == 2
    finally:
        with app.connection_for_write() as conn:
            try:
                app.amqp.queues[queue](conn.default_channel).delete()
            except Exception:
                pass
        tasks._kept.held = None


KILLED_ON_RECEIPT = """
import os, signal
from kombu.transport import redis as kombu_redis
def _die(self, message, delivery_tag):
    # The message is off the list (BRPOP) and not yet in kombu's unacknowledged set: the
    # moment a SIGKILL loses it.
    os.kill(os.getpid(), signal.SIGKILL)
kombu_redis.QoS.append = _die
"""


@pytest.mark.celery
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_as_it_takes_the_message_loses_it_and_the_publisher_sends_it_again(
    tmp_path, celery_app, job
):
    """The loss the SIGKILL benchmark found, made certain: a real worker dies between Redis
    handing it the message and kombu recording it as unacknowledged. Redis keeps nothing to
    redeliver; the publisher sends the batch again and the next worker stores it, once."""
    import subprocess
    import sys

    from tests.test_tasks import WORKER_APP, in_process_worker, worker_env

    queue = celery_app.conf.task_default_queue
    before = journal.pending()
    events = _journaled(9, "killed-on-receipt")
    _published(job, events)
    assert _redis().llen(queue) == 1
    unacked_before = _redis().hlen("unacked")

    env = worker_env(tmp_path, WORKER_APP + KILLED_ON_RECEIPT, REDIS_URL, queue)
    proc = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "killapp", "worker", "-P", "solo", "-Q", queue]
        + ["--without-heartbeat", "--without-mingle", "--without-gossip", "-l", "WARNING"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        cwd=str(tmp_path),
        timeout=120,
        check=False,
    )
    assert proc.returncode == -9, proc.stderr.decode()[-3000:]
    # Lost to Redis: off the queue, not among the unacknowledged messages.
    assert _redis().llen(queue) == 0 and _redis().hlen("unacked") == unacked_before
    assert Activity.objects.filter(endpoint__startswith="/killed-on-receipt/").count() == 0
    assert journal.pending() == before + 9  # but still in the publisher's journal

    w = writer.get_writer()
    job.sent.clock.now += 120
    job.run(w, stopping=False)
    assert _redis().llen(queue) == 1  # sent again
    with in_process_worker(celery_app, queue):
        deadline = time.monotonic() + 30
        stored = Activity.objects.filter(endpoint__startswith="/killed-on-receipt/")
        while stored.count() < 9 and time.monotonic() < deadline:
            time.sleep(0.1)
    assert stored.count() == 9
    job.sent.clock.now += confirm.FIRST_CHECK
    job.run(w, stopping=False)
    assert len(job.sent) == 0 and journal.pending() == before
    from django.db import connections

    connections.close_all()


@pytest.mark.django_db
def test_stored_ids_names_exactly_the_stored_events():
    """The confirmation's query (PostgreSQL: one array parameter; elsewhere the ORM)."""
    from tracking.pipeline.ingest import ingest, stored_ids

    events = [Event(type="API", endpoint=f"/ids/{i}/") for i in range(3)]
    assert ingest(events, source="test").stored == 3
    unknown = [str(uuid.uuid4()) for _ in range(600)]  # more than one ORM chunk
    assert stored_ids([*unknown, *(e.id for e in events)]) == {e.id for e in events}
    assert stored_ids([]) == set() and stored_ids(unknown[:1]) == set()
