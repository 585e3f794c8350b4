"""The outbox and who delivers: gaps of concurrent transactions, pruning, the background
thread, the Celery and import paths, and a site with nothing configured."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from tests.delivery_helpers import HttpReceiver, UdpListener, ndjson, plain_event
from tracking.delivery import outbox, runner
from tracking.models import DeliveryState, OutboxEntry
from tracking.pipeline.ingest import ingest


def entry(pk: int, age: float = 0.0, ids: str = "") -> OutboxEntry:
    return OutboxEntry.objects.create(
        id=pk, kind="activities", activity_ids=ids, count=1,
        created_at=timezone.now() - timedelta(seconds=age),
    )  # fmt: skip


@pytest.mark.django_db
def test_a_gap_is_waited_for_then_remembered(settings):
    settings.TRACKING_OUTBOX_GAP_GRACE = 60
    st = outbox.state("forward:test")
    entry(101, age=5)
    entry(102, age=5)
    entry(105, age=5)  # 103 and 104: transactions still committing
    found, position, gaps = outbox.read(st, 100)
    assert [e.id for e in found] == [101, 102] and position == 102 and gaps == []
    st.position = position
    later = timezone.now() + timedelta(seconds=120)  # past the grace: taken for rolled back
    found, position, gaps = outbox.read(st, 100, later)
    assert [e.id for e in found] == [105] and position == 105
    assert [g[0] for g in gaps] == [103, 104]
    st.position, st.gaps = position, gaps
    entry(104, age=0)  # ...but one did commit, late: it is still delivered
    found, position, gaps = outbox.read(st, 100, later)
    assert [e.id for e in found] == [104] and position == 105 and [g[0] for g in gaps] == [103]


@pytest.mark.django_db
def test_entries_everyone_consumed_are_pruned_and_nothing_is_written_unconfigured(settings):
    ingest([plain_event()])
    assert not OutboxEntry.objects.exists()  # no channel, no forwarder: no outbox cost
    assert runner.deliver().forwarded == 0
    settings.TRACKING_DELIVERY = "manual"
    settings.TRACKING_FORWARDERS = [
        {"backend": "logging", "name": "a"},
        {"backend": "logging", "name": "b"},
    ]
    ingest([plain_event()])
    ingest([plain_event()])
    assert OutboxEntry.objects.count() == 2
    runner.deliver()
    assert not OutboxEntry.objects.exists()
    assert set(DeliveryState.objects.values_list("name", flat=True)) == {"forward:a", "forward:b"}


@pytest.mark.django_db(transaction=True)
def test_the_background_thread_delivers_after_commit(settings):
    listener = UdpListener()
    settings.TRACKING_DELIVERY = "thread"
    settings.TRACKING_DELIVERY_INTERVAL = 30  # only the commit's wake-up can deliver in time
    settings.TRACKING_FORWARDERS = [
        {"backend": "syslog", "address": f"127.0.0.1:{listener.port}", "format": "json"}
    ]
    try:
        started = time.monotonic()
        ids = ingest([plain_event(), plain_event()]).ids
        lines = listener.wait_for(2, timeout=10)
        assert time.monotonic() - started < 10
        docs = [json.loads(line.split(" - ", 1)[1]) for line in lines]
        assert sorted(d["id"] for d in docs if "record_type" not in d) == sorted(ids)
    finally:
        runner.shutdown()
        listener.close()


@pytest.mark.django_db(transaction=True)
def test_forwarded_from_the_celery_task_and_import(settings, tmp_path):
    from tracking.pipeline.tasks import ingest_events

    receiver = HttpReceiver()
    settings.TRACKING_DELIVERY = "manual"
    settings.TRACKING_SEAL_ON_WRITE = False
    settings.TRACKING_FORWARDERS = [{"backend": "http", "url": receiver.url, "format": "json"}]
    try:
        payload = [plain_event().to_dict() for _ in range(3)]
        ingest_events.apply(args=[payload]).get()
        record = {
            "id": "6a1c1b55-0000-4000-8000-00000000000a",
            "timestamp": "2026-11-02T08:00:00+00:00",
            "type": "API",
        }
        path = tmp_path / "in.ndjson"
        path.write_text(json.dumps(record) + "\n")
        call_command(
            "tracking", "import", str(path), "--quiet", stdout=StringIO(), stderr=StringIO()
        )
        out = StringIO()
        call_command("tracking", "forward", stdout=out)
        assert "lines forwarded: 4" in out.getvalue()
        got = sorted(d["id"] for b in receiver.bodies() for d in ndjson(b))
        assert got == sorted([e["id"] for e in payload] + [record["id"]])
    finally:
        receiver.close()


@pytest.mark.django_db
def test_dashboard_panel_when_nothing_is_configured(client, staff_user):
    client.force_login(staff_user)
    page = client.get("/api/tracking/dashboard/").content.decode()
    assert 'id="delivery"' in page and "No alert channel or forwarder is configured" in page


@pytest.mark.django_db
def test_dashboard_panel_shows_backlog_of_a_forwarder(settings, client, staff_user):
    settings.TRACKING_DELIVERY = "manual"
    settings.TRACKING_FORWARDERS = [
        {"backend": "syslog", "name": "central", "address": "127.0.0.1:9", "protocol": "tcp", "format": "cef"}
    ]  # fmt: skip
    ingest([plain_event() for _ in range(3)])
    runner.deliver()  # nobody listens on port 9: refused
    client.force_login(staff_user)
    page = client.get("/api/tracking/dashboard/").content.decode()
    row = page.split('data-name="central"', 1)[1].split("</tr>", 1)[0]
    assert "never" in row and '<td class="backlog">3' in row and '<td class="failures">1' in row
    assert "refused" in row.lower()


@pytest.mark.django_db(transaction=True)
def test_celery_delivery_mode_queues_the_deliver_task(settings):
    from celery import Celery

    import tracking.delivery.tasks  # noqa: F401 - registers the shared task on the new app

    app = Celery("tracking-delivery-tests", set_as_current=True)
    app.conf.task_always_eager = True  # the task runs where it is queued: no broker needed
    listener = UdpListener()
    settings.TRACKING_DELIVERY = "celery"
    settings.TRACKING_FORWARDERS = [
        {"backend": "syslog", "address": f"127.0.0.1:{listener.port}", "format": "json"}
    ]
    runner._last_task[0] = 0.0
    try:
        ids = ingest([plain_event()]).ids
        lines = listener.wait_for(1)
        assert [json.loads(x.split(" - ", 1)[1])["id"] for x in lines][:1] == ids
        assert runner._thread is None or not runner._thread.thread.is_alive()
    finally:
        listener.close()


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_every_activity_exactly_once(settings):
    """Batches committing in any order while a forwarder reads: the cursor misses none and
    repeats none (on PostgreSQL, ids can become visible out of order)."""
    import threading

    from django.db import connections

    receiver = HttpReceiver()
    settings.TRACKING_DELIVERY = "manual"
    settings.TRACKING_SEAL_ON_WRITE = False
    settings.TRACKING_FORWARDERS = [{"backend": "http", "url": receiver.url, "format": "json"}]
    stored: list[str] = []
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            for _ in range(n):
                stored.extend(ingest([plain_event() for _ in range(3)]).ids)
        except BaseException as exc:  # reported by the test
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=write, args=(8,)) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            runner.deliver()
        for t in threads:
            t.join()
        assert not errors
        runner.deliver(timezone.now() + timedelta(seconds=120))  # holes left: none pending
        got = [d["id"] for b in receiver.bodies() for d in ndjson(b)]
        assert len(stored) == 96
        assert sorted(got) == sorted(stored)  # every one, none twice
    finally:
        receiver.close()
