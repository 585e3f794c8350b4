"""Synchronous recording in two stages: the row is committed before the response (durable
stage, ``judged=False``) and judged by the process's writer within a second (judge stage);
AUTH and requests inside a transaction are judged before the response; rows a dead process
left pending are judged at the writer's start and by its recovery scan; sealing waits for
the verdict; two judges never judge one row twice."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

import pytest
from django.core import checks
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from tests.conftest import _live_event
from tracking import signals
from tracking.checks import check_recording
from tracking.integrity.sealing import seal_pending
from tracking.integrity.verify import verify
from tracking.models import Activity, Finding, Rollup
from tracking.pipeline import housekeeping, pending, writer
from tracking.pipeline.ingest import ingest, judge

UTC = dt_timezone.utc

# One finding per DATA or AUTH event: a verdict every test can wait for.
RULE = (
    "title: seen\nid: sync-seen\nlevel: high\n"
    "detection: {sel: {type: [DATA, AUTH]}, condition: sel}\n"
    "action: {flag: true, tags: [sync_seen], severity: high}\n"
)


@pytest.fixture
def seen_rule(settings, tmp_path):
    (tmp_path / "seen.yml").write_text(RULE)
    settings.TRACKING_RULE_DIRS = [str(tmp_path)]
    return "sync_seen"


def _poll(check, timeout: float = 1.0):
    """``check()``'s first truthy value within ``timeout`` seconds (None if none)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(0.01)


def _verdict(endpoint: str):
    row = Activity.objects.filter(endpoint=endpoint).first()
    return row if row is not None and row.judged else None


def _rolled() -> tuple[int, int]:
    """(rows, flagged rows) the hourly rollups counted."""
    rows = list(Rollup.objects.values_list("count", "flagged"))
    return sum(c for c, _ in rows), sum(f for _, f in rows)


def _old_pending_rows(n: int, **fields) -> list[Activity]:
    """Rows as a process that died between the commit and the verdict leaves them."""
    start = datetime.now(UTC) - timedelta(minutes=2)
    events = [
        _live_event(type="DATA", endpoint=f"/left/{i}", timestamp=start + timedelta(seconds=i))
        for i in range(n)
    ]
    for key, value in fields.items():
        for e in events:
            setattr(e, key, value)
    result = ingest(events, assume_new=True, judge=False)
    assert result.stored == n and len(result.pending) == n
    return result.pending


@pytest.mark.django_db(transaction=True)
def test_a_synchronous_request_is_committed_before_the_response_and_judged_within_a_second(
    client, seen_rule
):
    got = []

    def on_flagged(sender, activity, findings, **kw):
        got.append((activity.id, activity.judged, [f.tag for f in findings]))

    signals.activity_flagged.connect(on_flagged)
    try:
        started = time.monotonic()
        assert client.get("/t/rec/status/200/").status_code == 200
        row = Activity.objects.get(endpoint="/t/rec/status/200/")  # durable already
        judged = _poll(lambda: _verdict("/t/rec/status/200/"))
        elapsed = time.monotonic() - started
    finally:
        signals.activity_flagged.disconnect(on_flagged)
    assert judged is not None, "no verdict within 1 s"
    assert elapsed < 1.0
    assert judged.flagged and seen_rule in judged.tags and judged.severity == "high"
    assert Finding.objects.filter(activity_id=row.id).count() == 1
    assert _rolled() == (1, 1)  # counted once, as judged
    # The alert path saw the judged row, never the pending one.
    assert _poll(lambda: got) and got[0][0] == row.id and got[0][1] is True
    assert writer.flush(10)  # the seal after the verdict (TRACKING_SEAL_INTERVAL = 0)
    assert Activity.objects.get().seq == 1 and verify().ok


@pytest.mark.django_db(transaction=True)
def test_the_durable_stage_is_one_insert_and_touches_no_shared_row(client, settings, seen_rule):
    """No rollup, profile, counter, outbox or advisory lock in the request: nothing another
    request waits for. The writer is held off (long flush interval) to see the pending row."""
    settings.TRACKING_FLUSH_INTERVAL = 30.0
    client.get("/t/rec/status/201/")  # warm: sessions, statements
    with CaptureQueriesContext(connection) as ctx:
        client.get("/t/rec/status/200/")
    sqls = [q["sql"] for q in ctx.captured_queries if "tracking_" in q["sql"]]
    assert len(sqls) == 1 and sqls[0].startswith("INSERT INTO"), sqls
    row = Activity.objects.get(endpoint="/t/rec/status/200/")
    assert row.judged is False and row.tags == [] and not row.flagged
    assert Rollup.objects.count() == 0 and Finding.objects.count() == 0
    assert writer.flush(10), writer.stats()  # the writer's round judges both
    row.refresh_from_db()
    assert row.judged and row.flagged and seen_rule in row.tags
    assert _rolled() == (2, 2)
    assert writer.stats()["judged"] == 2


@pytest.mark.django_db(transaction=True)
def test_auth_is_judged_before_the_response(client, settings, seen_rule):
    settings.TRACKING_FLUSH_INTERVAL = 30.0  # the writer would be too late
    client.get("/t/rec/login/")
    row = Activity.objects.get(endpoint="/t/rec/login/")
    assert row.type == "AUTH" and row.judged and row.flagged and seen_rule in row.tags
    assert _rolled() == (1, 1)


@pytest.mark.django_db(transaction=True)
def test_verdict_before_response_setting_names_the_types(client, settings, seen_rule):
    settings.TRACKING_FLUSH_INTERVAL = 30.0
    settings.TRACKING_VERDICT_BEFORE_RESPONSE = ["data"]  # case does not matter
    client.get("/t/rec/status/200/")
    assert Activity.objects.get().judged
    settings.TRACKING_VERDICT_BEFORE_RESPONSE = []
    client.get("/t/rec/login/")
    assert not Activity.objects.get(type="AUTH").judged
    settings.TRACKING_VERDICT_BEFORE_RESPONSE = ["*"]
    client.get("/t/rec/status/204/")
    assert Activity.objects.get(endpoint="/t/rec/status/204/").judged


@pytest.mark.django_db
def test_inside_a_transaction_the_request_is_judged_inline(client, seen_rule):
    """A test's (or ATOMIC_REQUESTS') transaction: the writer could not see the row, so the
    caller judges it before going on, as one batch step."""
    assert connection.in_atomic_block
    client.get("/t/rec/status/200/")
    row = Activity.objects.get()
    assert row.judged and row.flagged and seen_rule in row.tags
    assert Finding.objects.filter(activity=row).count() == 1


@pytest.mark.django_db(transaction=True)
def test_rows_left_pending_are_judged_when_the_writer_starts(settings, seen_rule):
    rows = _old_pending_rows(3)
    assert Activity.objects.filter(judged=False).count() == 3
    w = writer.get_writer()
    w.ensure_started()  # a restarted process: its writer's first round scans
    assert _poll(lambda: not Activity.objects.filter(judged=False).exists(), timeout=5.0)
    assert all(seen_rule in a.tags for a in Activity.objects.all())
    assert Finding.objects.count() == 3
    assert _poll(lambda: w.stats().get("recovered") == 3)
    assert {a.id for a in rows} == set(Activity.objects.values_list("id", flat=True))


@pytest.mark.django_db(transaction=True)
def test_the_recovery_scan_judges_only_rows_older_than_the_grace(seen_rule):
    left = _old_pending_rows(2)
    fresh = ingest(
        [_live_event(type="DATA", endpoint="/fresh/")],
        assume_new=True,
        judge=False,
    ).pending
    assert housekeeping.judge_unjudged() == 2
    assert set(Activity.objects.filter(judged=False).values_list("id", flat=True)) == {fresh[0].id}
    assert housekeeping.judge_unjudged() == 0  # nothing old is left; judged rows untouched
    assert Finding.objects.count() == 2 and {a.id for a in left} <= set(
        Finding.objects.values_list("activity_id", flat=True)
    )


@pytest.mark.django_db(transaction=True)
def test_sealing_skips_pending_rows_and_verify_stays_clean(seen_rule):
    """(TRACKING_SEAL_INTERVAL = 0 here: every commit of judged rows seals right after.)"""
    rows = _old_pending_rows(3)
    ingest([_live_event(type="API")], assume_new=True)
    assert seal_pending() == 0  # the pending rows wait
    assert list(Activity.objects.filter(seq__isnull=False).values_list("type", flat=True)) == [
        "API"
    ]
    report = verify()
    assert report.ok, list(report.summary_lines())
    assert report.unjudged == 3 and report.unsealed_rows_checked == 3
    assert Activity.objects.filter(judged=False, seq__isnull=False).count() == 0
    assert judge(rows) == 3  # sealed after its commit
    assert Activity.objects.filter(seq__isnull=True).count() == 0
    report = verify()
    assert report.ok and report.unjudged == 0 and report.sealed_rows_checked == 4
    assert Activity.objects.filter(flagged=True).count() == 3


@pytest.mark.django_db(transaction=True)
def test_a_pending_row_changed_behind_the_app_is_still_reported(seen_rule):
    """Pending rows are verified like any unsealed row: their MAC covers the row as stored."""
    rows = _old_pending_rows(1)
    Activity.objects.filter(id=rows[0].id).update(endpoint="/forged/")
    report = verify()
    assert not report.ok and report.ids("inserted") == {str(rows[0].id)}


@pytest.mark.django_db(transaction=True)
def test_judging_twice_judges_once(seen_rule):
    rows = _old_pending_rows(4)
    assert judge(rows) == 4
    again = list(Activity.objects.all())
    assert judge(again) == 0  # already judged: left alone
    assert Finding.objects.count() == 4
    assert _rolled() == (4, 4)


@pytest.mark.django_db(transaction=True)
def test_a_judge_skips_rows_another_judge_holds(seen_rule):
    """While one transaction holds the claim, a second judge takes none of those rows (on
    PostgreSQL it skips them; on SQLite it waits for the write lock and then finds them
    judged); afterwards every row has exactly one verdict."""
    rows = _old_pending_rows(3)
    holding, release = threading.Event(), threading.Event()
    outcome = {}

    def first():
        try:
            with transaction.atomic():
                outcome["claimed"] = pending.claim(list(Activity.objects.filter(judged=False)))
                holding.set()
                release.wait(10)
                Activity.objects.filter(id__in=outcome["claimed"]).update(judged=True)
        finally:
            connection.close()

    def second():
        try:
            outcome["second"] = judge(list(Activity.objects.filter(id__in=[r.id for r in rows])))
        finally:
            connection.close()

    t1 = threading.Thread(target=first)
    t1.start()
    assert holding.wait(10)
    t2 = threading.Thread(target=second)
    t2.start()
    if connection.vendor == "postgresql":
        t2.join(10)  # SKIP LOCKED: it does not wait for the first judge
        assert not t2.is_alive() and outcome["second"] == 0
    release.set()
    t1.join(10)
    t2.join(10)
    assert len(outcome["claimed"]) == 3 and outcome["second"] == 0
    assert Finding.objects.count() == 0  # the first "judge" marked them without a verdict
    assert not Activity.objects.filter(judged=False).exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_judges_give_each_row_one_verdict(seen_rule):
    rows = _old_pending_rows(20)
    results = []
    barrier = threading.Barrier(2)

    def run():
        try:
            mine = list(Activity.objects.filter(id__in=[r.id for r in rows]))
            barrier.wait(10)
            results.append(judge(mine))
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sum(results) == 20, results
    assert Finding.objects.count() == 20
    assert _rolled() == (20, 20)
    assert not Activity.objects.filter(seq__isnull=True).exists() and verify().ok


@pytest.mark.django_db(transaction=True)
def test_health_and_doctor_report_rows_awaiting_their_verdict(seen_rule):
    from tracking.health import collect

    _old_pending_rows(2)
    data = collect()
    assert data["unjudged"] == 2 and data["sealing"]["oldest_unjudged_age"] >= 100
    assert any("await their verdict" in p for p in data["problems"])
    housekeeping.judge_unjudged()
    data = collect()
    assert data["unjudged"] == 0 and not any("verdict" in p for p in data["problems"])


@pytest.mark.django_db(transaction=True)
def test_a_database_outage_at_the_durable_insert_spools_the_event(
    client, spool_dir, database_down, seen_rule
):
    from tracking.pipeline import spool

    assert client.get("/t/rec/status/200/").status_code == 200
    assert spool.pending()
    database_down.stop()
    assert housekeeping.replay_spool().stored == 1
    row = Activity.objects.get()
    assert row.judged and seen_rule in row.tags  # replay runs the whole batch step


def test_verdict_before_response_is_checked(settings):
    settings.TRACKING_VERDICT_BEFORE_RESPONSE = "AUTH"
    assert "tracking.E028" in [e.id for e in check_recording()]
    settings.TRACKING_VERDICT_BEFORE_RESPONSE = ["AUTH", ""]
    assert "tracking.E028" in [e.id for e in check_recording()]
    settings.TRACKING_VERDICT_BEFORE_RESPONSE = ["AUTH", "PAYMENT"]
    assert "tracking.E028" not in [e.id for e in check_recording()]
    assert all(isinstance(e, checks.CheckMessage) for e in check_recording())


@pytest.mark.django_db(transaction=True)
def test_tracking_flush_judges_rows_left_pending(seen_rule):
    import json
    from io import StringIO

    from django.core.management import call_command

    _old_pending_rows(2)
    out = StringIO()
    call_command("tracking", "flush", "--no-geo", stdout=out)
    assert json.loads(out.getvalue())["judged"] == 2
    assert Activity.objects.filter(judged=True, flagged=True).count() == 2
