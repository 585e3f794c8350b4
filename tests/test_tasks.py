"""The Celery hand-off against the real Redis, with a real worker started in the test."""

from __future__ import annotations

import os
import time
import uuid

import pytest
from django.db import OperationalError

from tracking.events import Event
from tracking.models import Activity
from tracking.pipeline import spool, writer

REDIS_URL = os.environ.get("TRACKING_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
AMQP_URL = os.environ.get("TRACKING_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")


@pytest.fixture
def celery_app(settings):
    from celery import Celery

    import tracking.pipeline.tasks  # noqa: F401 - registers the shared task on the new app

    queue = f"tracking-rec-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    app = Celery("tracking-tests", broker=REDIS_URL, set_as_current=True)
    settings.TRACKING_CELERY_APP = app
    app.conf.task_default_queue = queue
    app.conf.broker_connection_retry_on_startup = True
    app.conf.worker_hijack_root_logger = False
    settings.TRACKING_ASYNC_HANDOFF = "celery"
    settings.TRACKING_CELERY_QUEUE = queue
    yield app
    import redis

    redis.Redis.from_url(REDIS_URL).delete(queue)


def in_process_worker(app, queue: str | None = None):
    """A real Celery worker (solo pool) in this process on ``queue`` (the app's default
    queue), for as long as the ``with`` block runs."""
    from celery.contrib.testing.worker import start_worker

    return start_worker(
        app,
        pool="solo",
        perform_ping_check=False,
        queues=[queue or app.conf.task_default_queue],
        loglevel="WARNING",
    )


@pytest.mark.celery
@pytest.mark.django_db(transaction=True)
def test_celery_path_with_real_worker(celery_app, client):
    with in_process_worker(celery_app):
        before = writer.stats()["published"]
        for _ in range(3):
            assert client.get("/t/rec/pay/").status_code == 200
        assert writer.flush(10)
        assert writer.stats()["published"] == before + 3
        deadline = time.monotonic() + 20
        while Activity.objects.count() < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert Activity.objects.filter(endpoint="/t/rec/pay/", type="PAYMENT").count() == 3
    from django.db import connections

    connections.close_all()


@pytest.mark.django_db
def test_task_is_idempotent():
    from tracking.pipeline.tasks import ingest_events

    payload = [Event(type="API", endpoint="/x").to_dict()]
    first = ingest_events.apply(args=[payload]).get()
    again = ingest_events.apply(args=[payload]).get()
    assert first["stored"] == 1 and again == {
        "stored": 0,
        "duplicates": 1,
        "failed": 0,
        "rejected": 0,
    }
    assert Activity.objects.count() == 1


def test_task_options():
    from tracking.pipeline.tasks import ingest_events

    assert ingest_events.acks_late is True
    assert ingest_events.reject_on_worker_lost is True
    assert ingest_events.serializer == "json"
    assert ingest_events.name == "tracking.tasks.ingest_events"


@pytest.mark.django_db
def test_task_database_down_retries_then_spools(spool_dir):
    from tracking.pipeline.tasks import MAX_RETRIES, ingest_events
    from tracking.testing.faults import database_fault

    def down(sql, params):
        raise OperationalError("connection refused")

    with database_fault(down) as fault:
        result = ingest_events.apply(args=[[Event(type="API").to_dict()]])
    assert fault.calls == MAX_RETRIES + 1  # each attempt stops at its first statement
    assert result.get() == {"stored": 0, "spooled": 1}
    assert spool.stats()["events"] == 1


WORKER_APP = """
import os, time
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
import django
django.setup()
from celery import Celery
app = Celery("killapp", broker=os.environ["KILL_BROKER"])
app.conf.task_default_queue = os.environ["KILL_QUEUE"]
app.conf.broker_transport_options = {"visibility_timeout": 2, "unacked_restore_interval": 0.2}
app.conf.worker_prefetch_multiplier = 1
import tracking.pipeline.tasks  # noqa
if os.environ.get("KILL_SLOW"):
    from tracking.testing.faults import DatabaseFault, inserts_activities
    def slow(sql, params):
        print("BATCH", flush=True)
        time.sleep(60)
    DatabaseFault(slow, match=inserts_activities).start()
"""


def worker_env(tmp_path, app_code: str, broker: str, queue: str, **extra: str) -> dict:
    """Environment for a ``celery -A killapp worker`` run in ``tmp_path`` (where ``app_code``
    is written as killapp.py) on the test database."""
    from pathlib import Path

    from tests.test_faults import _db_url

    (tmp_path / "killapp.py").write_text(app_code)
    env = dict(
        os.environ,
        DATABASE_URL=_db_url(),
        PYTHONPATH=f"{tmp_path}:{Path(__file__).resolve().parents[1]}",
        KILL_BROKER=broker,
        KILL_QUEUE=queue,
        **extra,
    )
    env.pop("TEST_DB_SUFFIX", None)
    return env


def _delete_queue(app, queue: str) -> None:
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=0)
        conn.default_channel.queue_delete(queue)


@pytest.mark.celery
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("broker", [REDIS_URL, AMQP_URL], ids=["redis", "rabbitmq"])
def test_worker_killed_mid_batch_message_is_redelivered(tmp_path, settings, broker):
    """acks_late: a worker SIGKILLed inside the task leaves the message unacknowledged; the
    broker hands it to the next worker, and the batch is stored once. RabbitMQ redelivers
    when the dead worker's connection drops; Redis once the visibility timeout (2 s here,
    W014 asks for a short one in production) has passed."""
    import signal
    import subprocess
    import sys

    from celery import Celery

    queue = f"tracking-kill-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    env = worker_env(tmp_path, WORKER_APP, broker, queue, KILL_SLOW="1")
    app = Celery("kill-publisher", broker=broker, set_as_current=True)
    app.conf.task_default_queue = queue
    app.conf.broker_transport_options = {"visibility_timeout": 2, "unacked_restore_interval": 0.2}
    # A missing broker is a failure, not a skip: CI and `make test` run beside both.
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=0)
    except Exception as exc:
        pytest.fail(f"broker {broker} is not reachable ({exc}): start it or set the URL env")
    settings.TRACKING_CELERY_APP = app
    settings.TRACKING_CELERY_QUEUE = queue
    from tracking.pipeline.tasks import publish

    events = [Event(type="API", endpoint=f"/k/{i}") for i in range(5)]
    publish(events)
    errors = open(tmp_path / "worker-stderr.txt", "w+")  # noqa: SIM115
    # The worker redirects print() to its log (stderr): watch that file for the marker.
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "killapp",
            "worker",
            "-P",
            "solo",
            "-Q",
            queue,
            "--without-heartbeat",
            "--without-mingle",
            "--without-gossip",
            "-l",
            "WARNING",
        ],
        stdout=subprocess.DEVNULL,
        stderr=errors,
        env=env,
        cwd=str(tmp_path),
    )
    started = False
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if "BATCH" in (tmp_path / "worker-stderr.txt").read_text():
                started = True
                break
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    errors.seek(0)
    assert started, errors.read()[-3000:]
    assert Activity.objects.count() == 0  # killed inside the batch: nothing committed
    try:
        with in_process_worker(app, queue):
            deadline = time.monotonic() + 30
            while Activity.objects.count() < 5 and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(0.5)  # a second delivery would show here
    finally:
        _delete_queue(app, queue)
    assert sorted(Activity.objects.values_list("endpoint", flat=True)) == [
        f"/k/{i}" for i in range(5)
    ]
    from django.db import connections

    connections.close_all()


@pytest.mark.django_db(transaction=True)
def test_celery_handoff_publishes_batches_not_one_message_per_request(
    settings, spool_dir, monkeypatch
):
    """The request path only journals and queues; the writer publishes up to BATCH_SIZE
    events per broker round trip and then, with confirmation off, releases their journal
    lines (tests/test_confirm.py: with it on, once the database holds the events)."""
    from tracking.pipeline import journal, tasks
    from tracking.services import ActivityTracker

    settings.TRACKING_ASYNC_HANDOFF = "celery"
    settings.TRACKING_CELERY_CONFIRM_AFTER = 0
    settings.TRACKING_BATCH_SIZE = 50
    settings.TRACKING_FLUSH_INTERVAL = 5  # batches close when full (or at the flush below)
    published: list[list[str]] = []
    monkeypatch.setattr(tasks, "publish", lambda batch: published.append([e.id for e in batch]))
    tracker = ActivityTracker()
    journaled = journal.stats()["journal_journaled"]
    events = [Event(type="API", endpoint=f"/pub/{i}") for i in range(200)]
    for e in events:
        tracker.record(e, async_log=True)
    assert journal.stats()["journal_journaled"] == journaled + 200
    assert writer.flush(10)
    # Four full batches on a quiet machine; a busy one may close a batch early (the writer
    # never waits for a batch to fill while the queue is empty), never one per request.
    assert len(published) <= 8 and all(len(b) <= 50 for b in published), published
    assert sorted(i for b in published for i in b) == sorted(e.id for e in events)
    assert journal.pending() == 0 and Activity.objects.count() == 0


def _queued(queue: str) -> int:
    import redis

    return redis.Redis.from_url(REDIS_URL).llen(queue)


@pytest.mark.celery
def test_publishing_keeps_one_broker_connection_between_batches(celery_app, monkeypatch):
    """Opening a connection per batch (connect, PING, channel, queue declaration) cost the
    web process more than the rest of publishing; a kept one is used while it is fresh."""
    from tracking.pipeline import tasks

    queue = celery_app.conf.task_default_queue
    used = []
    for i in range(3):
        tasks.publish([Event(type="API", endpoint=f"/kept/{i}")])
        used.append(tasks._kept.held[2])
    assert used[0] is used[1] is used[2]
    assert _queued(queue) == 3
    # Idle longer than KEEP_IDLE: replaced before use (brokers drop quiet clients).
    monkeypatch.setattr(tasks, "KEEP_IDLE", 0.0)
    tasks.publish([Event(type="API", endpoint="/kept/idle")])
    assert tasks._kept.held[2] is not used[0] and _queued(queue) == 4


@pytest.mark.celery
def test_a_batch_sent_on_a_connection_the_broker_dropped_still_arrives(celery_app):
    import redis

    from tracking.pipeline import tasks

    queue = celery_app.conf.task_default_queue
    tasks.publish([Event(type="API", endpoint="/before")])
    conn = tasks._kept.held[2]
    client_id = conn.default_channel.client.client_id()
    # The broker closes the kept connection (a restart, an idle timeout).
    redis.Redis.from_url(REDIS_URL).client_kill_filter(_id=client_id)
    tasks.publish([Event(type="API", endpoint="/after")])
    assert _queued(queue) == 2


@pytest.mark.celery
def test_a_publish_that_fails_twice_raises_and_keeps_no_connection(celery_app, monkeypatch):
    from tracking.pipeline import tasks

    tasks.publish([Event(type="API")])  # a kept connection now exists
    sent = []

    def broken(task, payload, conn, count, intake_rows):
        sent.append(conn)
        raise ConnectionError("broker gone")

    monkeypatch.setattr(tasks, "_send", broken)
    with pytest.raises(ConnectionError):
        tasks.publish([Event(type="API")])
    assert len(sent) == 2 and sent[0] is not sent[1]  # the retry used a new connection
    assert getattr(tasks._kept, "held", None) is None


@pytest.mark.celery
@pytest.mark.django_db
def test_the_broker_carries_one_sealed_batch(celery_app, spool_dir):
    """What the writer publishes: the batch's JSON (the journal's own, made once in the
    request), compressed and encrypted as one item; nothing readable on the broker."""
    import base64
    import json as jsonlib

    import redis

    from tracking.pipeline import journal
    from tracking.pipeline.tasks import ingest_events, publish

    journaled = Event(type="LOGIN", endpoint="/secret-path/", username="alice")
    assert journal.append(journaled, keep_json=True)
    assert journal.json_of(journaled) is not None
    events = [journaled, *(Event(type="API", endpoint=f"/n/{i}/") for i in range(300))]
    publish(events)
    raw = redis.Redis.from_url(REDIS_URL).lrange(celery_app.conf.task_default_queue, 0, -1)
    assert len(raw) == 1
    envelope = jsonlib.loads(raw[0])
    assert envelope["headers"]["argsrepr"] == "[301 sealed events]"
    (items,), _kwargs, _embed = jsonlib.loads(base64.b64decode(envelope["body"]))
    assert len(items) == 1 and items[0].startswith("batch:v1:")
    assert b"alice" not in raw[0] and b"secret-path" not in raw[0]
    # Compressed: far smaller than the events' own JSON.
    plain = sum(len(jsonlib.dumps(e.to_dict())) for e in events)
    assert len(items[0]) < plain / 4
    journal.release([journaled])
    assert journal.json_of(journaled) is None

    result = ingest_events.apply(args=[items]).get()
    assert result["stored"] == 301 and result["rejected"] == 0
    stored = Activity.objects.get(endpoint="/secret-path/")
    assert stored.username == "alice" and str(stored.id) == journaled.id


@pytest.mark.django_db
def test_forged_or_altered_broker_items_are_dead_letters(settings, spool_dir):
    import json as jsonlib

    from tracking.pipeline import wire
    from tracking.pipeline.tasks import ingest_events

    sealed = wire.pack([Event(type="API", endpoint="/a/"), Event(type="API", endpoint="/b/")])
    line = spool.encode(Event(type="API", endpoint="/line/")).decode().strip()
    flipped = sealed[:-6] + ("A" if sealed[-6] != "A" else "B") + sealed[-5:]
    other_key = Event(type="API", endpoint="/other-key/")
    with override_keys(settings):
        foreign = wire.pack([other_key])
    spool_line_as_batch = wire.PREFIX + line  # a spool line's AAD is not a batch's
    result = ingest_events.apply(
        args=[
            [
                sealed,
                line,
                {"type": "API", "endpoint": "/dict/"},
                flipped,
                foreign,
                spool_line_as_batch,
                "v1:deadbeef:AAAA",
                42,
            ]
        ]
    ).get()
    assert result["stored"] == 4 and result["rejected"] == 5
    assert set(Activity.objects.values_list("endpoint", flat=True)) == {
        "/a/",
        "/b/",
        "/line/",
        "/dict/",
    }
    letters = [jsonlib.loads(x) for x in (spool_dir / spool.REJECTED).read_text().splitlines()]
    assert len(letters) == 5
    assert sum("failed authentication" in x["reason"] for x in letters) >= 3


def override_keys(settings):
    """A context in which another encryption key is the only one."""
    from contextlib import contextmanager

    from tracking.integrity import crypto

    @contextmanager
    def ctx():
        before = settings.TRACKING_ENCRYPTION_KEYS
        settings.TRACKING_ENCRYPTION_KEYS = [crypto.generate_key()]
        try:
            yield
        finally:
            settings.TRACKING_ENCRYPTION_KEYS = before

    return ctx()


def test_a_batch_larger_than_the_bound_is_refused(monkeypatch):
    from tracking.pipeline import wire

    sealed = wire.pack([Event(type="API", endpoint="/x/" + "a" * 5000)])
    monkeypatch.setattr(wire, "MAX_UNPACKED", 1000)
    events, bad = wire.unpack([sealed])
    assert events == [] and "larger than 1000 bytes" in bad[0][1]


@pytest.mark.django_db
def test_a_message_that_is_not_a_list_is_a_dead_letter(spool_dir):
    from tracking.pipeline.tasks import ingest_events

    result = ingest_events.apply(args=["v1:x:y"]).get()
    assert result["stored"] == 0 and result["rejected"] == 1
    assert Activity.objects.count() == 0
