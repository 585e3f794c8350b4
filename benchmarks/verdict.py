"""Verdict latency of synchronous ``@track`` on PostgreSQL (issue #20, point 1's target).

``run.py --only verdict`` (``--split`` pins as ``split.py`` does). One gunicorn server (2 sync
workers) with the ``track-sync`` views on a fresh database:

1. Moderate constant load (wrk, 2 connections 5 ms apart, on ``/plain-sync/``) and, beside it,
   sampled requests to ``/marked-sync/<marker>/``, one path each. Right after each response
   the benchmark checks that the row is there (durable before the response) and then polls
   until it has its verdict (``Activity.judged`` true): the time from the response to the
   verdict, an upper bound of the time from the commit to the verdict.
2. Saturation (8 connections) for the measurement time; when wrk stops, how many rows are
   still waiting for their verdict and how long until none is.

Without an ``Activity.judged`` column (every row judged before the response), the time to the
verdict is printed as "n/a: no judged field" and only "stored at response" is measured.
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


def _connect(db: str):
    import psycopg

    return psycopg.connect(dbs.url(BACKEND, db), autocommit=True)


def has_judged(conn) -> bool:
    return bool(
        conn.execute(
            "SELECT 1 FROM information_schema.columns "
            "WHERE table_name = 'tracking_activity' AND column_name = 'judged'"
        ).fetchone()
    )


def _sample(conn, port: int, marker: str, judged: bool) -> tuple[bool, float | None]:
    """(row stored when the response arrived, seconds from the response to the verdict)."""
    path = f"/marked-sync/{marker}/"
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
        resp.read()
    answered = time.monotonic()
    sql = (
        "SELECT " + ("judged" if judged else "true") + " FROM tracking_activity WHERE endpoint = %s"
    )
    row = conn.execute(sql, (path,)).fetchone()
    stored = row is not None
    if not judged:
        return stored, None
    while time.monotonic() - answered < TIMEOUT:
        if row is not None and row[0]:
            return stored, time.monotonic() - answered
        time.sleep(0.002)
        row = conn.execute(sql, (path,)).fetchone()
    return stored, float("inf")


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
        judged = has_judged(conn)
        if not judged:
            print(
                "  time to verdict: n/a: no judged field (Activity.judged): every row is "
                "judged before its response"
            )
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
                results.append(_sample(conn, srv.port, f"v{i}", judged))
                time.sleep(spacing)
            load.join()
            stored = sum(1 for s, _ in results if s)
            report.add(
                Figure(
                    "verdict",
                    f"sync rows stored when the response arrived ({where})",
                    stored,
                    "rows",
                    SAMPLES,
                    "responses",
                    "durable before the response",
                    stored == SAMPLES,
                    note=f"{SAMPLES} sampled requests under the moderate constant load",
                )
            )
            if judged:
                times = sorted(t for _, t in results if t is not None)
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
                        f"{PACED_DELAY_MS} ms apart)",
                    )
                )
            sat = wrk(
                variant.paths["django"],
                connections=8,
                seconds=seconds,
                script=script,
                port=srv.port,
            )
            if judged:
                stopped = time.monotonic()
                sql = "SELECT count(*) FROM tracking_activity WHERE NOT judged"
                pending = left = conn.execute(sql).fetchone()[0]
                while left and time.monotonic() - stopped < TIMEOUT:
                    time.sleep(0.02)
                    left = conn.execute(sql).fetchone()[0]
                report.add(
                    Figure(
                        "verdict",
                        f"sync rows without verdict after saturation, judged in ({where})",
                        time.monotonic() - stopped,
                        "s",
                        note=f"{pending} rows pending when {sat.requests:,} requests at "
                        f"{sat.rps:,.0f} req/s (8 conn) stopped; {left} still pending at the end",
                    )
                )
