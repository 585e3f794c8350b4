"""Scale-out: two real Celery worker processes on the machine's Redis share the hand-off.

Events go through ``TRACKING_ASYNC_HANDOFF="celery"`` (the writer publishes batches to the
task ``tracking.tasks.ingest_events``) and some batches are delivered again, concurrently, as
a broker does after a lost acknowledgement. Every event must be stored once, detected once
(no duplicated findings) and sealed in order (seq contiguous, ``tracking verify`` clean).

The workers run ``tests.settings`` against this test's database (PostgreSQL: the test
database's name; SQLite: the test database file) on a queue of their own, so parallel runs on
the same Redis never take each other's tasks.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import uuid
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.models import Count
from django.test import override_settings

from tracking.events import Event
from tracking.models import Activity, Finding, Seal

UTC = dt_timezone.utc

REDIS_URL = os.environ.get("TRACKING_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
ROOT = Path(__file__).resolve().parent.parent
EVENTS = 160
BATCH = 16

WORKER = textwrap.dedent(
    """
    import os, sys
    import django
    django.setup()
    from celery import Celery
    app = Celery("tracking-scaleout")
    app.conf.update(
        broker_url=os.environ["SCALEOUT_BROKER"],
        broker_connection_retry_on_startup=True,
        worker_prefetch_multiplier=1,
        task_acks_late=True,
        worker_hijack_root_logger=False,
    )
    app.set_default()
    app.set_current()
    import tracking.pipeline.tasks  # noqa: F401  registers tracking.tasks.ingest_events on this app
    app.worker_main([
        "worker", "--pool=solo", "--loglevel=INFO", "-Q", os.environ["SCALEOUT_QUEUE"],
        "-n", os.environ["SCALEOUT_NAME"], "--without-gossip", "--without-mingle",
    ])
    """
)


def _redis_up() -> bool:
    try:
        import redis

        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping())
    except Exception:
        return False


def _database_url() -> str:
    """The URL of the database this test runs on, for the worker processes."""
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


@pytest.fixture
def celery_app():
    """This process's Celery app: publishes to the machine's Redis (the writer's hand-off)."""
    from celery import Celery

    app = Celery("tracking-scaleout-client")
    app.conf.update(broker_url=REDIS_URL, broker_connection_retry_on_startup=True)
    app.set_default()
    app.set_current()
    yield app
    app.close()


@pytest.fixture
def workers(tmp_path, celery_app):
    """Two ``celery worker`` processes on a private queue; yields (queue, [log paths])."""
    # A missing broker is a failure, not a skip: CI and `make test` run beside the machine's Redis.
    assert _redis_up(), f"Redis is not reachable at {REDIS_URL} (set TRACKING_TEST_REDIS_URL)"
    queue = f"tracking-scaleout-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="tests.settings",
        DATABASE_URL=_database_url(),
        PYTHONPATH=str(ROOT),
        SCALEOUT_BROKER=REDIS_URL,
        SCALEOUT_QUEUE=queue,
    )
    env.pop("TEST_DB_SUFFIX", None)
    procs, logs, names = [], [], []
    for i in (1, 2):
        name = f"scaleout{i}-{uuid.uuid4().hex[:6]}@localhost"
        log = tmp_path / f"worker{i}.log"
        handle = log.open("w")
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", WORKER],
                env=env | {"SCALEOUT_NAME": name},
                stdout=handle,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                start_new_session=True,
            )
        )
        logs.append(log)
        names.append(name)
    try:
        deadline = time.monotonic() + 25
        ready: set[str] = set()
        while time.monotonic() < deadline and len(ready) < 2:
            for reply in celery_app.control.ping(destination=names, timeout=0.5) or []:
                ready |= set(reply)
            for proc, log in zip(procs, logs, strict=True):
                if proc.poll() is not None:
                    pytest.fail(f"celery worker exited:\n{log.read_text()[-3000:]}")
        assert len(ready) == 2, "both celery workers must answer a ping"
        yield queue, logs
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        try:
            import redis

            redis.Redis.from_url(REDIS_URL).delete(queue)
        except Exception:
            pass


def _events() -> list[Event]:
    """Realistic traffic: a few users on their usual networks, one account jumping countries
    (so detectors produce findings whose duplication the test can see)."""
    from tracking.simulator.world import NETWORKS, host

    start = datetime.now(UTC) - timedelta(hours=2)
    events = []
    for i in range(EVENTS):
        network = NETWORKS[(i * 7) % len(NETWORKS)] if i % 5 == 0 else NETWORKS[i % 3]
        events.append(
            Event(
                type=("AUTH", "PAYMENT", "API")[i % 3],
                timestamp=start + timedelta(seconds=20 * i),
                username=f"user{i % 6}",
                session_id=f"{i % 11:064x}",
                ip_address=host(network, i % 200 + 1),
                user_agent="Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
                endpoint="/api/payments/" if i % 3 == 1 else "/api/auth/login/",
                method="POST",
                status=200 if i % 17 else 401,
                duration=12.5 + i % 40,
                headers={"Accept": "application/json"},
                params={"amount": i},
            )
        )
    return events


def _wait_for_rows(expected: int, timeout: float = 25.0) -> int:
    """Wait until the workers stored ``expected`` rows and have sealed them, then a little
    longer so late duplicate deliveries would show."""
    deadline = time.monotonic() + timeout
    n = sealed = 0
    while time.monotonic() < deadline:
        n = Activity.objects.count()
        sealed = Activity.objects.filter(seq__isnull=False).count()
        if n >= expected and sealed >= n:
            break
        time.sleep(0.2)
    time.sleep(1.0)
    return Activity.objects.count()


@pytest.mark.celery
@pytest.mark.django_db(transaction=True)
def test_two_celery_workers_store_detect_and_seal_every_event_once(workers):
    from tracking.capture.tracker import get_tracker
    from tracking.pipeline import tasks, writer

    queue, logs = workers
    events = _events()
    with override_settings(
        TRACKING_ASYNC_HANDOFF="celery",
        TRACKING_CELERY_QUEUE=queue,
        TRACKING_BATCH_SIZE=BATCH,
        TRACKING_SEAL_ON_WRITE=True,
    ):
        tracker = get_tracker()
        for event in events:
            tracker.record(event, async_log=True)  # the request path's hand-off
        assert writer.flush(timeout=15), "the writer did not hand every event to the broker"
        # At-least-once delivery: a third of the batches arrive again, to whichever worker.
        for i in range(0, EVENTS, BATCH * 3):
            tasks.publish(events[i : i + BATCH])
            tasks.publish(events[i : i + BATCH])
        stored = _wait_for_rows(EVENTS)

    # Stored once.
    assert stored == EVENTS
    ids = set(Activity.objects.values_list("id", flat=True))
    assert {uuid.UUID(e.id) for e in events} == ids

    # Detected once: the same detector never reported the same tag twice on one activity,
    # and the tags stored on each row are exactly its unsuppressed findings' tags.
    dupes = (
        Finding.objects.values("activity_id", "detector", "tag")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
    )
    assert list(dupes) == []
    assert Finding.objects.exists(), "the traffic includes country jumps: detection must run"
    for activity in Activity.objects.filter(findings__isnull=False).distinct():
        tags = set(
            Finding.objects.filter(activity_id=activity.pk, suppressed=False).values_list(
                "tag", flat=True
            )
        )
        assert tags <= set(activity.tags)

    # Sealed in order: seq is 1..N without gaps and every seal links to the previous one.
    rows = list(Activity.objects.order_by("seq").values_list("seq", "timestamp", "id"))
    assert [r[0] for r in rows] == list(range(1, EVENTS + 1))
    seals = list(Seal.objects.order_by("last_seq"))
    assert seals and seals[0].first_seq == 1 and seals[-1].last_seq == EVENTS
    for before, after in zip(seals, seals[1:], strict=False):
        assert after.first_seq == before.last_seq + 1
        assert after.prev_hash == before.chain_hash
    out, err = StringIO(), StringIO()
    try:
        call_command("tracking", "verify", stdout=out, stderr=err)
    except SystemExit as exc:
        pytest.fail(f"tracking verify exited {exc.code}:\n{out.getvalue()}\n{err.getvalue()}")

    # Both worker processes really did work.
    for log in logs:
        assert "tracking.tasks.ingest_events" in log.read_text(), log.read_text()[-2000:]
