"""The Celery hand-off against the real Redis, with a real worker started in the test."""

from __future__ import annotations

import os
import time
import uuid

import pytest
from django.db import OperationalError

from tracking import spool, writer
from tracking.events import Event
from tracking.models import Activity

REDIS_URL = os.environ.get("TRACKING_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture
def celery_app(settings):
    from celery import Celery

    import tracking.tasks  # noqa: F401 - registers the shared task on the new app

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


@pytest.mark.celery
@pytest.mark.django_db(transaction=True)
def test_celery_path_with_real_worker(celery_app, client):
    from celery.contrib.testing.worker import start_worker

    with start_worker(
        celery_app,
        pool="solo",
        perform_ping_check=False,
        queues=[celery_app.conf.task_default_queue],
        loglevel="WARNING",
    ):
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
    from tracking.tasks import ingest_events

    payload = [Event(type="API", endpoint="/x").to_dict()]
    first = ingest_events.apply(args=[payload]).get()
    again = ingest_events.apply(args=[payload]).get()
    assert first["stored"] == 1 and again == {"stored": 0, "duplicates": 1, "failed": 0}
    assert Activity.objects.count() == 1


def test_task_options():
    from tracking.tasks import ingest_events

    assert ingest_events.acks_late is True
    assert ingest_events.reject_on_worker_lost is True
    assert ingest_events.serializer == "json"
    assert ingest_events.name == "tracking.tasks.ingest_events"


@pytest.mark.django_db
def test_task_database_down_retries_then_spools(monkeypatch, settings, tmp_path):
    from tracking import ingest as mod
    from tracking.tasks import MAX_RETRIES, ingest_events

    settings.TRACKING_SPOOL_DIR = str(tmp_path)
    calls = []

    def down(pairs):
        calls.append(1)
        raise OperationalError("connection refused")

    monkeypatch.setattr(mod, "_insert", down)
    result = ingest_events.apply(args=[[Event(type="API").to_dict()]])
    assert len(calls) == MAX_RETRIES + 1
    assert result.get() == {"stored": 0, "spooled": 1}
    assert spool.stats()["events"] == 1
