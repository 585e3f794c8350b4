"""Verdict latency of synchronous ``@track`` on PostgreSQL (issue #20, point 1's target).

``run.py --only verdict`` (``--split`` pins as ``split.py`` does). One gunicorn server (2 sync
workers) with the ``track-sync`` views on a fresh database.

A synchronous request that is not stored in full before its response commits its event,
encrypted, to ``tracking_intake`` (one INSERT); the process's writer stores it as an
activity row, written once with its verdict, and then deletes the intake row
(docs/pipeline.md, "Synchronous requests: the intake"). The intake's payload is encrypted, so
a request's intake row is recognised by its id: the activity keeps the event's id.

1. Moderate constant load (wrk, 2 connections 5 ms apart, on ``/plain-sync/``) and, beside it,
   sampled requests to ``/marked-sync/<marker>/``, one at a time, one path each. Right after
   each response one statement (one snapshot) reads the activity row with that endpoint and
   the ids in the intake: the request was *durable at the response* when its activity was
   there or its id was in the intake (the writer deletes an intake row only after the batch
   that stored its activity committed, so a snapshot sees at least one of them). Then the
   benchmark polls until the activity row exists: the time from the response to the verdict,
   an upper bound of the time from the commit to the verdict. (The look comes a few hundred
   microseconds after the response; an event committed in between would count as durable.)
2. Saturation (8 connections) for the measurement time; when wrk stops, how many events are
   still in the intake and how long until it is empty.
"""

from __future__ import annotations

import statistics
import threading
import time
import urllib.request
from contextlib import nullcontext

from . import dbs, pin
from .overhead import (
    PACED_CONNECTIONS,
    PACED_DELAY_MS,
    SETTINGS,
    VARIANTS,
    Server,
    _free_port,
    _lua_script,
    wrk,
)
from .report import Figure, Report

BACKEND = "postgresql"
TARGET_S = 1.0  # issue #20: the verdict in place within one second at normal load
SAMPLES = 20
TIMEOUT = 60.0

# One statement, one snapshot: the request's activity (written only with its verdict) and
# the events still waiting in the intake.
SNAPSHOT = (
    "SELECT (SELECT id FROM tracking_activity WHERE endpoint = %s LIMIT 1), "
    "ARRAY(SELECT id FROM tracking_intake)"
)
ACTIVITY = "SELECT id FROM tracking_activity WHERE endpoint = %s LIMIT 1"
INTAKE_COUNT = "SELECT count(*) FROM tracking_intake"


def _connect(db: str):
    import psycopg

    return psycopg.connect(dbs.url(BACKEND, db), autocommit=True)


def durable(activity_id, intake_ids, stored_id) -> bool:
    """Was the request durable when its response arrived? ``activity_id``: its activity's id
    then (None: not stored yet); ``intake_ids``: the ids in the intake then; ``stored_id``:
    its activity's id once it was stored (None: never, within the timeout)."""
    if activity_id is not None:
        return True
    return stored_id is not None and str(stored_id) in {str(i) for i in intake_ids or ()}


def _sample(conn, port: int, marker: str) -> tuple[bool, float]:
    """(durable when the response arrived, seconds from the response to the activity row
    with its verdict; ``inf`` when it did not appear within ``TIMEOUT``)."""
    path = f"/marked-sync/{marker}/"
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
        resp.read()
    answered = time.monotonic()
    at_response, intake_ids = conn.execute(SNAPSHOT, (path,)).fetchone()
    if at_response is not None:  # stored in full before the response, or the writer was quick
        return True, time.monotonic() - answered
    while time.monotonic() - answered < TIMEOUT:
        row = conn.execute(ACTIVITY, (path,)).fetchone()
        if row is not None:
            return durable(None, intake_ids, row[0]), time.monotonic() - answered
        time.sleep(0.002)
    return False, float("inf")


def run(report: Report, *, seconds: float, split: bool = False) -> None:
    why = pin.available() if split else ""
    if why:
        print(f"  split-machine mode not possible here: {why}")
        return
    from tracking.simulator.geoip import build_databases

    build_databases(dbs.VAR / "geoip")
    variant = VARIANTS["track-sync"]
    db = "verdict_tracking"
    dbs.fresh(BACKEND, db, SETTINGS.format(variant.settings))
    paced, script = _lua_script(PACED_DELAY_MS), _lua_script()
    where = "split machine" if split else "whole machine"
    with pin.split() if split else nullcontext({}) as pinned, _connect(db) as conn:
        if split:
            print("  " + pin.describe(pinned), flush=True)
        with Server(variant, BACKEND, db, _free_port()) as srv:
            assert srv.proc is not None
            if split:
                pin.pin_tree(srv.proc.pid, pin.web_cpus())
            wrk(variant.paths["django"], connections=2, seconds=1, script=script, port=srv.port)
            spacing = 0.2
            load = threading.Thread(
                target=wrk,
                args=(variant.paths["django"],),
                kwargs=dict(
                    connections=PACED_CONNECTIONS,
                    seconds=max(seconds, SAMPLES * spacing + 2),
                    script=paced,
                    port=srv.port,
                ),
            )
            load.start()
            time.sleep(1.0)
            results = []
            for i in range(SAMPLES):
                results.append(_sample(conn, srv.port, f"v{i}"))
                time.sleep(spacing)
            load.join()
            kept = sum(1 for d, _ in results if d)
            report.add(
                Figure(
                    "verdict",
                    f"sync requests durable when the response arrived ({where})",
                    kept,
                    "requests",
                    SAMPLES,
                    "responses",
                    "durable before the response (intake row or activity)",
                    kept == SAMPLES,
                    note=f"{SAMPLES} sampled requests under the moderate constant load",
                )
            )
            times = sorted(t for _, t in results)
            missing = sum(1 for t in times if t == float("inf"))
            report.add(
                Figure(
                    "verdict",
                    f"sync time from response to verdict, p50 ({where})",
                    1000 * statistics.median(times),
                    "ms",
                    target=f"<= {TARGET_S * 1000:.0f} ms",
                    ok=max(times) <= TARGET_S,
                    note=f"max {1000 * max(times):.1f} ms over {len(times)} samples "
                    f"under the moderate constant load ({PACED_CONNECTIONS} conn, "
                    f"{PACED_DELAY_MS} ms apart): time until the activity row, written once "
                    "with its verdict, exists"
                    + (f"; {missing} never stored within {TIMEOUT:.0f} s" if missing else ""),
                )
            )
            sat = wrk(
                variant.paths["django"],
                connections=8,
                seconds=seconds,
                script=script,
                port=srv.port,
            )
            stopped = time.monotonic()
            waiting = left = conn.execute(INTAKE_COUNT).fetchone()[0]
            while left and time.monotonic() - stopped < TIMEOUT:
                time.sleep(0.02)
                left = conn.execute(INTAKE_COUNT).fetchone()[0]
            report.add(
                Figure(
                    "verdict",
                    f"sync events left in the intake after saturation, stored in ({where})",
                    time.monotonic() - stopped,
                    "s",
                    note=f"{waiting} events in the intake when {sat.requests:,} requests at "
                    f"{sat.rps:,.0f} req/s (8 conn) stopped; {left} still there at the end",
                )
            )
