"""Synchronous recording: the event is committed to the intake before the response (one
INSERT, encrypted) and stored as an activity with its verdict by the process's writer within
a second (the batch step); AUTH and requests inside a transaction are stored in full before
the response; what a dead process left in the intake is stored at the writer's start and by
its recovery scan; an event stored twice keeps one row and one verdict."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from io import StringIO

import pytest
from django.core import checks
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.conftest import _live_event
from tracking import signals
from tracking.binding import server_bound_cursor
from tracking.checks import check_recording
from tracking.integrity.verify import verify
from tracking.models import Activity, Finding, Intake, Rollup
from tracking.pipeline import housekeeping, intake, spool, writer

UTC = dt_timezone.utc

def _poll(check, timeout: float = 1.0):
    """``check()``'s first truthy value within ``timeout`` seconds (None if none)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(0.01)


def _rolled() -> tuple[int, int]:
    """(rows, flagged rows) the hourly rollups counted."""
    rows = list(Rollup.objects.values_list("count", "flagged"))
    return sum(c for c, _ in rows), sum(f for _, f in rows)


def _left_in_intake(n: int, *, age: float = 120.0, **fields) -> list:
    """Events as a process that died between its intake commit and the batch step leaves
    them: committed to the intake ``age`` seconds ago, no activity."""
    start = datetime.now(UTC) - timedelta(seconds=age)
    events = [
        _live_event(type="DATA", endpoint=f"/left/{i}", timestamp=start + timedelta(seconds=i))
        for i in range(n)
    ]
    for key, value in fields.items():
        for e in events:
            setattr(e, key, value)
    intake.store(events)
    Intake.objects.filter(id__in=[e.id for e in events]).update(created=start)
    return events


@pytest.mark.django_db(transaction=True)
def test_a_synchronous_request_is_durable_before_the_response_and_judged_within_a_second(
    client, seen_rule
):
    got = []

    def on_flagged(sender, activity, findings, **kw):
        got.append((activity.id, [f.tag for f in findings]))

    signals.activity_flagged.connect(on_flagged)
    try:
        started = time.monotonic()
        assert client.get("/t/rec/status/200/").status_code == 200
        # Durable already: in the intake, or (the writer was quick) stored.
        assert Intake.objects.exists() or Activity.objects.exists()
        row = _poll(lambda: Activity.objects.filter(endpoint="/t/rec/status/200/").first())
        elapsed = time.monotonic() - started
        # The writer sends the signal right after its commit: this thread may see the row
        # first, so the receiver stays connected until the signal came.
        signalled = _poll(lambda: got)
    finally:
        signals.activity_flagged.disconnect(on_flagged)
    assert row is not None, "no activity within 1 s"
    assert elapsed < 1.0
    # Written once, with its verdict.
    assert row.flagged and seen_rule in row.tags and row.severity == "high"
    assert Finding.objects.filter(activity_id=row.id).count() == 1
    assert _rolled() == (1, 1)
    assert signalled and got[0][0] == row.id
    assert _poll(lambda: not Intake.objects.exists())
    assert writer.flush(10)  # the seal (TRACKING_SEAL_INTERVAL = 0 in the tests)
    assert Activity.objects.get().seq == 1 and verify().ok


@pytest.mark.django_db(transaction=True)
def test_the_request_does_one_insert_into_the_intake_and_touches_no_shared_row(
    client, settings, seen_rule
):
    """No activity row, rollup, profile, counter, outbox or advisory lock in the request:
    nothing another request waits for. The writer is held off (long flush interval)."""
    settings.TRACKING_FLUSH_INTERVAL = 30.0
    client.get("/t/rec/status/201/")  # warm: sessions, statements
    with CaptureQueriesContext(connection) as ctx:
        client.get("/t/rec/status/200/?q=needle-in-the-query", HTTP_USER_AGENT="NeedleAgent/1.0")
    sqls = [q["sql"] for q in ctx.captured_queries if "tracking_" in q["sql"]]
    assert len(sqls) == 1 and sqls[0].startswith("INSERT INTO") and "intake" in sqls[0], sqls
    assert not Activity.objects.exists() and Rollup.objects.count() == 0
    # Encrypted at rest like the spool: nothing of the request readable in the table.
    payloads = list(Intake.objects.values_list("payload", flat=True))
    assert len(payloads) == 2
    assert not any("needle" in p.lower() or "/t/rec/" in p for p in payloads)
    assert writer.flush(10), writer.stats()  # the writer's round stores both
    row = Activity.objects.get(endpoint="/t/rec/status/200/")
    assert row.flagged and seen_rule in row.tags and row.user_agent == "NeedleAgent/1.0"
    assert _rolled() == (2, 2)
    assert writer.stats()["judged"] == 2 and not Intake.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_auth_is_stored_with_its_verdict_before_the_response(client, settings, seen_rule):
    settings.TRACKING_FLUSH_INTERVAL = 30.0  # the writer would be too late
    client.get("/t/rec/login/")
    row = Activity.objects.get(endpoint="/t/rec/login/")
    assert row.type == "AUTH" and row.flagged and seen_rule in row.tags
    assert _rolled() == (1, 1) and not Intake.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_verdict_due_before_the_response_stores_the_events_handed_over_before_it(
    client, settings, seen_rule
):
    """Detection of the AUTH request sees the process's earlier synchronous events, as an
    import of the same events would: they are stored in its batch, not left to the writer."""
    settings.TRACKING_FLUSH_INTERVAL = 30.0  # the writer's round would come too late
    client.get("/t/rec/status/200/")
    client.get("/t/rec/status/201/")
    assert Intake.objects.count() == 2 and not Activity.objects.exists()
    client.get("/t/rec/login/")
    assert sorted(Activity.objects.values_list("endpoint", flat=True)) == [
        "/t/rec/login/",
        "/t/rec/status/200/",
        "/t/rec/status/201/",
    ]
    assert not Intake.objects.exists() and _rolled() == (3, 3)
    assert writer.flush(10) and writer.stats().get("judged", 0) == 0  # nothing stored twice


@pytest.mark.django_db(transaction=True)
def test_verdict_before_response_setting_names_the_types(client, settings, seen_rule):
    settings.TRACKING_FLUSH_INTERVAL = 30.0
    settings.TRACKING_VERDICT_BEFORE_RESPONSE = ["data"]  # case does not matter
    client.get("/t/rec/status/200/")
    assert Activity.objects.get().flagged
    settings.TRACKING_VERDICT_BEFORE_RESPONSE = []
    client.get("/t/rec/login/")
    assert not Activity.objects.filter(type="AUTH").exists() and Intake.objects.count() == 1
    settings.TRACKING_VERDICT_BEFORE_RESPONSE = ["*"]
    client.get("/t/rec/status/204/")
    assert Activity.objects.get(endpoint="/t/rec/status/204/").flagged


@pytest.mark.django_db
def test_inside_a_transaction_the_request_is_stored_inline(client, seen_rule):
    """A test's (or ATOMIC_REQUESTS') transaction: the writer could not see the intake row,
    so the caller runs the batch step before going on."""
    assert connection.in_atomic_block
    client.get("/t/rec/status/200/")
    row = Activity.objects.get()
    assert row.flagged and seen_rule in row.tags
    assert Finding.objects.filter(activity=row).count() == 1
    assert not Intake.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_an_event_the_intake_cannot_encrypt_is_stored_in_full_before_the_response(
    client, settings, monkeypatch, seen_rule
):
    """The intake keeps nothing in clear: when the event cannot be encrypted for it, the
    synchronous path stores the activity itself (the batch step, before the response)."""
    settings.TRACKING_FLUSH_INTERVAL = 30.0

    def refuse(event):
        raise intake.Unusable("no key")

    monkeypatch.setattr(intake, "_payload", refuse)
    client.get("/t/rec/status/200/")
    row = Activity.objects.get(endpoint="/t/rec/status/200/")
    assert row.flagged and not Intake.objects.exists()


def test_only_events_with_a_uuid_id_take_the_intake():
    assert intake.accepts(_live_event())
    assert not intake.accepts(_live_event(id="not-a-uuid"))


@pytest.mark.django_db(transaction=True)
def test_events_left_in_the_intake_are_stored_when_the_writer_starts(seen_rule):
    events = _left_in_intake(3)
    w = writer.get_writer()
    w.ensure_started()  # a restarted process: its writer's first round scans
    assert _poll(lambda: Activity.objects.count() == 3, timeout=5.0)
    assert _poll(lambda: not Intake.objects.exists())
    assert all(seen_rule in a.tags for a in Activity.objects.all())
    assert Finding.objects.count() == 3
    assert _poll(lambda: w.stats().get("recovered") == 3)
    assert {e.id for e in events} == {str(i) for i in Activity.objects.values_list("id", flat=True)}


@pytest.mark.django_db(transaction=True)
def test_the_recovery_scan_takes_only_events_older_than_the_grace(seen_rule):
    left = _left_in_intake(2)
    fresh = _live_event(type="DATA", endpoint="/fresh/")
    intake.store([fresh])
    assert housekeeping.judge_unjudged() == 2
    assert [str(i) for i in Intake.objects.values_list("id", flat=True)] == [fresh.id]
    assert housekeeping.judge_unjudged() == 0  # nothing old is left
    assert {str(i) for i in Finding.objects.values_list("activity_id", flat=True)} == {
        e.id for e in left
    }


def _dead_pid() -> int:
    """A pid no process has (a child that already exited and was reaped)."""
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.django_db(transaction=True)
def test_what_a_gone_process_of_this_host_left_is_stored_at_once(seen_rule):
    """A worker restarted after a crash: its writer's first scan stores what the dead one
    committed moments ago, without waiting for the grace; a live process's young rows (and
    this process's own) are left to their writer; another host's wait for the grace."""
    host = intake.me().split(":")[0]
    dead, live_other, mine, elsewhere = (
        _left_in_intake(1, age=1.0, endpoint=f"/{name}/")[0]
        for name in ("dead", "live", "mine", "elsewhere")
    )
    owners = {
        dead.id: f"{host}:{_dead_pid()}:123",
        live_other.id: f"{host}:{os.getppid()}:{intake._started(os.getppid())}",
        elsewhere.id: "other-host:1:1",
    }
    for ident, owner in owners.items():
        Intake.objects.filter(id=ident).update(owner=owner)
    # A live pid whose start time differs is a reused pid: its predecessor is gone.
    reused = _left_in_intake(1, age=1.0, endpoint="/reused/")[0]
    Intake.objects.filter(id=reused.id).update(owner=f"{host}:{os.getppid()}:0")
    assert Intake.objects.get(id=mine.id).owner == intake.me()
    assert housekeeping.judge_unjudged() == 2
    assert sorted(Activity.objects.values_list("endpoint", flat=True)) == ["/dead/", "/reused/"]
    assert {str(i) for i in Intake.objects.values_list("id", flat=True)} == {
        live_other.id,
        mine.id,
        elsewhere.id,
    }
    assert housekeeping.judge_unjudged(older_than=None) == 3  # without a grace: every row


@pytest.mark.django_db(transaction=True)
def test_an_altered_intake_row_is_refused_as_a_dead_letter_not_parsed(spool_dir, seen_rule):
    good, forged, swapped = _left_in_intake(3)
    # Plain JSON naming the row's own id: what someone who can write to the table would forge.
    Intake.objects.filter(id=forged.id).update(
        payload=json.dumps({"id": forged.id, "type": "ADMIN", "endpoint": "/forged/"})
    )
    other = Intake.objects.get(id=good.id).payload
    Intake.objects.filter(id=swapped.id).update(payload=other)  # a valid line, another id
    assert housekeeping.judge_unjudged() == 1
    assert [str(i) for i in Activity.objects.values_list("id", flat=True)] == [good.id]
    assert not Intake.objects.exists()
    letters = [json.loads(line) for line in (spool_dir / spool.REJECTED).open()]
    reasons = {spool.decode_line(d["event"].encode())["id"]: d["reason"] for d in letters}
    assert set(reasons) == {forged.id, swapped.id}
    assert all(r.startswith("intake:") for r in reasons.values())
    assert "not encrypted" in reasons[forged.id]


@pytest.mark.django_db(transaction=True)
def test_storing_twice_keeps_one_row_and_one_verdict(seen_rule):
    events = _left_in_intake(4)
    assert intake.judge(events).stored == 4
    intake.store(events)  # the same events again (a recovery racing the writer)
    again = intake.judge(events)
    assert again.stored == 0 and again.duplicates == 4 and not again.dead_letters
    intake.store(events)  # and handed over as fresh: the failed insert takes the lookup
    fresh = intake.judge(events, fresh=True)
    assert fresh.stored == 0 and fresh.duplicates == 4 and not fresh.dead_letters
    assert Activity.objects.count() == 4 and Finding.objects.count() == 4
    assert _rolled() == (4, 4) and not Intake.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_batch_steps_of_the_same_events_give_each_one_verdict(seen_rule):
    events = _left_in_intake(20)
    results = []
    barrier = threading.Barrier(2)

    def run():
        try:
            barrier.wait(10)
            results.append(intake.judge(events, fresh=True))
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 2, results
    assert sum(r.stored for r in results) == 20 and not any(r.dead_letters for r in results)
    assert Activity.objects.count() == 20 and Finding.objects.count() == 20
    assert _rolled() == (20, 20) and not Intake.objects.exists()
    assert writer.flush(10) and verify().ok


@pytest.mark.django_db(transaction=True)
def test_health_verify_and_doctor_report_events_awaiting_their_verdict(seen_rule):
    from tracking.health import collect

    _left_in_intake(2)
    data = collect()
    assert data["unjudged"] == 2 and data["sealing"]["oldest_unjudged_age"] >= 100
    assert any("await their verdict" in p for p in data["problems"])
    report = verify()
    assert report.ok and report.unjudged == 2
    assert any("2 events in the intake" in line for line in report.summary_lines())
    out = StringIO()
    with pytest.raises(SystemExit):  # doctor exits non-zero on a problem
        call_command("tracking", "doctor", stdout=out)
    assert "Verdicts owed: 2" in out.getvalue()
    housekeeping.judge_unjudged()
    data = collect()
    assert data["unjudged"] == 0 and not any("verdict" in p for p in data["problems"])


@pytest.mark.django_db(transaction=True)
def test_a_database_outage_at_the_intake_insert_spools_the_event(
    client, spool_dir, database_down, seen_rule
):
    assert client.get("/t/rec/status/200/").status_code == 200
    assert spool.pending()
    database_down.stop()
    assert housekeeping.replay_spool().stored == 1
    row = Activity.objects.get()
    assert seen_rule in row.tags  # replay runs the whole batch step


@pytest.mark.django_db(transaction=True)
def test_an_outage_during_the_batch_step_keeps_the_intake_rows(seen_rule):
    from tracking.testing.faults import DatabaseFault, refuse

    events = _left_in_intake(2, age=1.0)
    outage = DatabaseFault(refuse).start()
    try:
        result = intake.judge(events)  # the database refuses the tracking statements
    finally:
        outage.stop()
    assert result.stored == 0 and len(result.unwritten) == 2
    assert Intake.objects.count() == 2  # nothing lost: the recovery scan stores them
    assert housekeeping.judge_unjudged(older_than=None) == 2
    assert Activity.objects.count() == 2 and not Intake.objects.exists()


def test_verdict_before_response_is_checked(settings):
    settings.TRACKING_VERDICT_BEFORE_RESPONSE = "AUTH"
    assert "tracking.E028" in [e.id for e in check_recording()]
    settings.TRACKING_VERDICT_BEFORE_RESPONSE = ["AUTH", ""]
    assert "tracking.E028" in [e.id for e in check_recording()]
    settings.TRACKING_VERDICT_BEFORE_RESPONSE = ["AUTH", "PAYMENT"]
    assert "tracking.E028" not in [e.id for e in check_recording()]
    assert all(isinstance(e, checks.CheckMessage) for e in check_recording())


@pytest.mark.django_db(transaction=True)
def test_tracking_flush_stores_what_was_left_in_the_intake(seen_rule):
    _left_in_intake(2)
    out = StringIO()
    call_command("tracking", "flush", "--no-geo", stdout=out)
    assert json.loads(out.getvalue())["judged"] == 2
    assert Activity.objects.filter(flagged=True).count() == 2 and not Intake.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_on_postgresql_the_intake_insert_binds_its_values_server_side(settings):
    """psycopg 3 sends the payload as a parameter (an unnamed statement: no prepared statement
    a transaction-mode pooler could lose); Django's cursor whenever statements are logged or
    wrapped, so instrumentation still sees the insert."""
    if connection.vendor != "postgresql":
        assert server_bound_cursor(connection) is None
        return
    cursor = server_bound_cursor(connection)
    assert cursor is not None
    cursor.close()
    event = _live_event(type="DATA", endpoint="/bound/")
    intake.store([event])
    assert [str(i) for i in Intake.objects.values_list("id", flat=True)] == [event.id]
    seen = []
    with connection.execute_wrapper(lambda execute, sql, *a: seen.append(sql) or execute(sql, *a)):
        assert server_bound_cursor(connection) is None
        intake.store([_live_event(type="DATA")])
    assert len(seen) == 1 and "tracking_intake" in seen[0]
    with CaptureQueriesContext(connection):
        assert server_bound_cursor(connection) is None
    stored = intake.judge([event])
    assert stored.stored == 1 and Activity.objects.get().endpoint == "/bound/"
    # removed by one statement with an array parameter
    assert not Intake.objects.filter(id=event.id).exists()


@pytest.mark.django_db(transaction=True)
def test_the_intake_insert_keeps_one_cursor_per_connection():
    """Making a cursor per request cost as much as the INSERT's own client work: the cursor
    is kept for the connection, and a new connection gets a new one."""
    from tracking.binding import reusable_cursor

    if connection.vendor != "postgresql":
        assert reusable_cursor(connection) is None
        return
    first = reusable_cursor(connection)
    intake.store([_live_event(type="DATA")])
    intake.store([_live_event(type="DATA")])
    assert reusable_cursor(connection) is first and not first.closed
    assert Intake.objects.count() == 2
    connection.close()
    again = reusable_cursor(connection)
    assert again is not first
    intake.store([_live_event(type="DATA")])
    assert Intake.objects.count() == 3
    with CaptureQueriesContext(connection):  # statements logged: Django's own cursor
        assert reusable_cursor(connection) is None


@pytest.mark.django_db(transaction=True)
def test_the_intake_commit_waits_for_the_disk_only_with_durable_handoff(settings, monkeypatch):
    """The row is committed before the response either way. By default its own transaction
    does not wait for PostgreSQL's WAL flush (synchronous_commit off for that statement
    only); with TRACKING_DURABLE_HANDOFF, or inside a caller's transaction, the plain INSERT
    waits for it. The session's own setting never changes."""
    from django.db import transaction

    chosen: list[str] = []
    real = intake._insert_statement

    def spy(vendor, conn, *, wait_for_flush=True):
        found = real(vendor, conn, wait_for_flush=wait_for_flush)
        chosen.append(found[0])
        return found

    monkeypatch.setattr(intake, "_insert_statement", spy)

    def show() -> str:
        with connection.cursor() as cur:
            cur.execute("SHOW synchronous_commit")
            return cur.fetchone()[0]

    intake.store([_live_event(type="DATA")])
    assert Intake.objects.count() == 1
    if connection.vendor != "postgresql":  # other backends: always the plain INSERT
        assert "VALUES" in chosen[-1] and "set_config" not in chosen[-1]
        assert "set_config" not in real(connection.vendor, connection, wait_for_flush=False)[0]
        return
    assert "set_config('synchronous_commit', 'off', true)" in chosen[-1]
    assert show() == "on"  # local to the INSERT's transaction
    # What the statement does to the transaction it runs in, and only to it.
    with transaction.atomic():
        cur = server_bound_cursor(connection)
        cur.execute(chosen[-1], [uuid.uuid4(), datetime.now(UTC), "x", "test"])
        assert show() == "off"
        transaction.set_rollback(True)
    assert show() == "on"

    settings.TRACKING_DURABLE_HANDOFF = True
    intake.store([_live_event(type="DATA")])
    assert "set_config" not in chosen[-1] and "VALUES" in chosen[-1]
    settings.TRACKING_DURABLE_HANDOFF = False
    with transaction.atomic():
        intake.store([_live_event(type="DATA")])
    assert "set_config" not in chosen[-1]
    assert Intake.objects.count() == 3 and show() == "on"


@pytest.mark.django_db
def test_remove_deletes_the_named_intake_rows_only():
    events = [_live_event(type="DATA", endpoint=f"/rm/{i}") for i in range(3)]
    intake.store(events)
    intake.remove([])
    intake.remove([events[0].id, uuid.UUID(str(events[1].id))])  # text or UUID
    assert [str(i) for i in Intake.objects.values_list("id", flat=True)] == [events[2].id]
