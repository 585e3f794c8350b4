"""Synchronous requests with the Celery hand-off: the web process commits the intake row and
publishes it; a Celery worker runs the batch step and deletes the row. A broker that does not
take the batch leaves it to the web process's writer, as before."""

from __future__ import annotations

import time

import pytest

from tests.test_sync_judging import _poll
from tests.test_tasks import celery_app, in_process_worker  # noqa: F401 - the fixture
from tracking.models import Activity, Finding, Intake
from tracking.pipeline import handoff, tasks, wire, writer

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def celery_handoff(settings):
    settings.TRACKING_ASYNC_HANDOFF = "celery"
    handoff._broker["down_until"] = 0.0
    yield
    handoff._broker["down_until"] = 0.0


def test_the_web_process_publishes_the_intake_and_the_worker_judges_it(
    client, celery_handoff, seen_rule, monkeypatch
):
    published: list[tuple[list, bool]] = []

    def publish(batch, *, intake_rows=False):
        published.append((list(batch), intake_rows))
        return wire.pack(batch)

    monkeypatch.setattr(tasks, "publish", publish)
    before = writer.stats().get("judging_published", 0)
    assert client.get("/t/rec/status/200/").status_code == 200
    assert writer.flush(10)
    # Committed and handed to the workers; the web process stored nothing.
    assert Intake.objects.count() == 1 and not Activity.objects.exists()
    assert len(published) == 1 and published[0][1] is True
    (event,) = published[0][0]
    assert event.endpoint == "/t/rec/status/200/" and event.type == "DATA"
    assert writer.stats()["judging_published"] == before + 1

    # The worker's task: the batch step, then the intake row removed.
    result = tasks.ingest_events([wire.pack(published[0][0])], intake_rows=True)
    assert result["stored"] == 1
    row = Activity.objects.get()
    assert str(row.id) == event.id and row.flagged and seen_rule in row.tags
    assert Finding.objects.filter(activity_id=row.id).count() == 1
    assert not Intake.objects.exists()
    # Delivered twice (at-least-once): one row, one verdict.
    assert tasks.ingest_events([wire.pack(published[0][0])], intake_rows=True)["stored"] == 0
    assert Activity.objects.count() == 1 and Finding.objects.count() == 1


def test_a_batch_the_broker_refuses_is_judged_in_the_web_process(
    client, celery_handoff, seen_rule, monkeypatch
):
    def down(batch, *, intake_rows=False):
        raise ConnectionError("broker down")

    monkeypatch.setattr(tasks, "publish", down)
    assert client.get("/t/rec/status/200/").status_code == 200
    assert writer.flush(10)
    row = _poll(lambda: Activity.objects.first(), timeout=5)
    assert row is not None and row.flagged and seen_rule in row.tags
    assert _poll(lambda: not Intake.objects.exists(), timeout=5)
    assert handoff._broker["down_until"] > time.monotonic()  # the local path for a while


def test_the_async_task_without_the_flag_leaves_intake_rows_alone(seen_rule):
    """Only batches published from the intake delete intake rows."""
    from tests.conftest import _live_event
    from tracking.pipeline import intake

    event = _live_event(type="DATA", endpoint="/both")
    intake.store([event])
    assert tasks.ingest_events([wire.pack([event])])["stored"] == 1
    assert Intake.objects.filter(id=event.id).exists()


@pytest.mark.celery
def test_a_real_worker_judges_synchronous_requests(celery_app, client, seen_rule):  # noqa: F811
    from django.db import connections

    with in_process_worker(celery_app):
        judged = writer.stats().get("judged", 0)
        for code in (200, 201, 202):
            assert client.get(f"/t/rec/status/{code}/").status_code == code
        assert writer.flush(10)
        stored = _poll(lambda: Activity.objects.count() == 3, timeout=20)
        assert stored, f"{Activity.objects.count()} of 3 stored by the worker"
        assert _poll(lambda: not Intake.objects.exists(), timeout=10)
    assert set(Activity.objects.values_list("flagged", flat=True)) == {True}
    assert Finding.objects.count() == 3
    assert writer.stats().get("judged", 0) == judged  # none in the web process
    connections.close_all()
