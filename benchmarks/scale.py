"""Queries at scale on PostgreSQL: list pages, filters, deep paging, stats, the admin
changelist and a full CSV export (rows/s and peak RSS of the export process).

The child (``python -m benchmarks.scale --rows N``) loads the database once
(``bench_scale``; reused while it holds N rows) and times each request through the Django
test client as a superuser: the full stack (auth, filters, serialisation, JSON) without
network noise. Figures are medians of repeated requests after a warm-up.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from pathlib import Path

import django

from . import dbs
from .report import Figure

UTC = dt_timezone.utc

SETTINGS = "benchmarks.project.settings_scale"


def _db(rows: int) -> str:
    # One database per size: a quick run never throws away the 1M-row load (10 minutes).
    return f"scale_{rows}"


def run(report, *, rows: int) -> None:
    from . import child

    url = dbs.url("postgresql", _db(rows))
    if not _loaded(rows):
        dbs.fresh("postgresql", _db(rows), SETTINGS)
    else:
        # Reuse the 10-minute load; migrations added since (e.g. 0003: daily rollups, filled
        # from the hourly rows) are applied to it.
        dbs.migrate("postgresql", _db(rows), SETTINGS)
    child.run(report, "benchmarks.scale", ["--rows", str(rows)], settings=SETTINGS, db_url=url)


def _loaded(rows: int) -> bool:
    try:
        return dbs.count("postgresql", _db(rows), "tracking_activity") == rows
    except Exception:
        return False


def _p50(client, path: str, repeat: int) -> tuple[float, int]:
    response = client.get(path)  # warm-up (and plan cache)
    assert response.status_code == 200, (path, response.status_code, response.content[:300])
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    return statistics.median(times), len(response.content)


def _tree_rss_mib(pid: int) -> tuple[float, float]:
    """Resident memory of ``pid`` and all its descendants now, and the largest high-water
    mark (VmHWM: the peak since its exec) of any one of them (MiB), from /proc."""
    total_kib, hwm_kib, todo, seen = 0, 0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            with open(f"/proc/{p}/status") as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        hwm_kib = max(hwm_kib, int(line.split()[1]))
                    elif line.startswith("VmRSS:"):
                        total_kib += int(line.split()[1])
                        break
            with open(f"/proc/{p}/task/{p}/children") as fh:
                todo.extend(int(c) for c in fh.read().split())
        except (OSError, ValueError):
            continue  # exited meanwhile
    return total_kib / 1024, hwm_kib / 1024


def _export(path: Path, budget: float) -> tuple[float, float, int, bool, float]:
    """Full CSV export in a subprocess: (seconds, peak RSS MiB of its largest process,
    rows written, finished, peak RSS MiB of the whole process tree, sampled every 50 ms:
    ``--workers`` forks encoders, and the target is for the export, not one process).
    A run longer than ``budget`` seconds is stopped; its rate is what it wrote by then.

    The largest process's peak is its VmHWM, read while it runs: ``wait4``'s ``ru_maxrss``
    also counts the benchmark process itself, whose memory the child shares until its exec
    (after loading 1M rows in this process it reported 250 MiB for an export that peaked
    at 96)."""
    started = time.perf_counter()
    # To stdout (not -o, which writes a temporary file renamed at the end), so a run stopped
    # at the budget still shows how many rows it wrote.
    sink = path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "django", "tracking", "export", "--format", "csv"],
        env=dict(os.environ),
        cwd=dbs.ROOT,
        stdout=sink,
        stderr=subprocess.DEVNULL,
    )
    finished = True
    tree_peak = largest = 0.0
    while True:
        tree, hwm = _tree_rss_mib(proc.pid)
        tree_peak, largest = max(tree_peak, tree), max(largest, hwm)
        pid, status, _ = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() - started > budget:
            proc.kill()
            finished = False
            _, status, _ = os.wait4(proc.pid, 0)
            break
        time.sleep(0.05)
    seconds = time.perf_counter() - started
    sink.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if finished and proc.returncode != 0:
        raise RuntimeError(f"export exited {proc.returncode}")
    with path.open("rb") as fh:
        lines = max(0, sum(1 for _ in fh) - 1)  # minus the header
    return seconds, largest, lines, finished, tree_peak


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--export-budget", type=float, default=300.0, help="seconds")
    parser.add_argument("--export-only", action="store_true", help="only the CSV export")
    args = parser.parse_args()
    django.setup()

    from benchmarks.child import emit
    from tracking.models import Activity
    from tracking.storage import partitioning

    n = args.rows
    have = Activity.objects.count()
    if have != n:
        months = 4
        for i in range(months + 1):
            partitioning.ensure_partitions(
                0, now=partitioning.add_months(partitioning.month_start(datetime.now(UTC)), -i)
            )
        from benchmarks.loader import load

        print(f"loading {n:,} activities (COPY)...", flush=True)
        seconds = load(n - have, days=90)
        emit(
            Figure(
                "queries",
                f"load {n - have:,} rows (generate+COPY+indexes+rollups)",
                (n - have) / seconds,
                "rows/s",
            )
        )
    _vacuum()
    emit(
        Figure(
            "queries",
            "activities in the table",
            Activity.objects.count(),
            "rows",
            note=f"{len(partitioning.list_partitions())} partitions",
        )
    )

    if not args.export_only:
        _pages(args, n)
    _export_figures(args)


def _vacuum() -> None:
    """VACUUM ANALYZE the tables the queries read, once per load (when never vacuumed).

    A live database is vacuumed by autovacuum; a freshly COPY-loaded one (or a server with
    autovacuum off) has no visibility map, so index-only scans would visit the heap anyway
    and the planner would have no statistics for the rollup tables.
    """
    from django.db import connection

    tables = ["tracking_activity", "tracking_finding", "tracking_rollup", "tracking_dailyrollup"]
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM pg_stat_user_tables WHERE relname = ANY(%s)"
            " AND last_vacuum IS NULL AND last_autovacuum IS NULL"
            " AND relname NOT LIKE 'tracking_activity%%'",
            [tables],
        )
        pending = cur.fetchone()[0]
        cur.execute(
            "SELECT count(*) FROM pg_stat_user_tables WHERE relname LIKE 'tracking_activity_p%%'"
            " AND n_live_tup > 0 AND last_vacuum IS NULL AND last_autovacuum IS NULL"
        )
        pending += cur.fetchone()[0]
        if not pending:
            return
        started = time.perf_counter()
        for table in tables:
            cur.execute(f"VACUUM (ANALYZE) {table}")
        print(f"vacuumed {', '.join(tables)} in {time.perf_counter() - started:.0f} s", flush=True)


def _pages(args, n: int) -> None:
    from django.contrib.auth import get_user_model
    from django.test import Client

    from benchmarks.child import emit
    from tracking.models import Activity

    User = get_user_model()
    admin, _ = User.objects.get_or_create(
        username="bench-admin", defaults={"is_staff": True, "is_superuser": True}
    )
    admin.is_staff = admin.is_superuser = True
    admin.set_password("x")
    admin.save()
    client = Client()
    client.force_login(admin)

    user_pk = Activity.objects.exclude(user=None).values_list("user_id", flat=True).first()
    now = datetime.now(UTC)
    week = (now - timedelta(days=37)).strftime("%Y-%m-%dT%H:%M:%SZ")
    week_end = (now - timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    api = "/api/tracking/activities/"
    pages = [
        ("list page, unfiltered", api, 50, "p50 <= 50 ms"),
        ("list page, by user", f"{api}?user={user_pk}", 50, "p50 <= 50 ms"),
        ("list page, by flagged", f"{api}?flagged=true", 50, "p50 <= 50 ms"),
        (
            "list page, by date range (1 week)",
            f"{api}?since={week}&until={week_end}",
            50,
            "p50 <= 50 ms",
        ),
        ("list page, cursor mode first page", f"{api}?cursor=", 50, "p50 <= 50 ms"),
        ("stats, all time", "/api/tracking/stats/", 250, "<= 250 ms"),
        (
            "stats, last 7 days",
            f"/api/tracking/stats/?since={(now - timedelta(days=7)):%Y-%m-%d}",
            250,
            "<= 250 ms",
        ),
        ("admin changelist", "/admin/tracking/activity/", 300, "<= 300 ms"),
        (
            "admin changelist, flagged filter",
            "/admin/tracking/activity/?flagged__exact=1",
            300,
            "<= 300 ms",
        ),
    ]
    # The baseline: the same stack answering the smallest authenticated API request.
    base, _ = _p50(client, f"{api}?page_size=1&username=nobody-at-all", args.repeat)
    emit(Figure("queries", "baseline: empty filtered page (stack cost)", base, "ms"))
    for name, path, limit, target in pages:
        ms, size = _p50(client, path, args.repeat)
        emit(
            Figure(
                "queries",
                name,
                ms,
                "ms",
                base,
                "empty page",
                target,
                ms <= limit,
                note=f"{size:,} bytes",
            )
        )

    # Deep paging: follow ``next`` 20 pages down in cursor mode, time each hop.
    url, hops = f"{api}?cursor=&page_size=100", []
    for _ in range(21):
        started = time.perf_counter()
        response = client.get(url)
        hops.append((time.perf_counter() - started) * 1000)
        url = response.json().get("next")
        if not url:
            break
    deep = statistics.median(hops[1:]) if len(hops) > 1 else float("nan")
    emit(
        Figure(
            "queries",
            "deep paging, cursor (median of 20 next hops, 100/page)",
            deep,
            "ms",
            base,
            "empty page",
            "p50 <= 50 ms",
            deep <= 50,
        )
    )
    deep_page = max(2, min(2000, n // 50 // 2))
    ms, _ = _p50(client, f"{api}?page={deep_page}", 3)
    emit(
        Figure(
            "queries",
            f"deep paging, page number {deep_page} (OFFSET {(deep_page - 1) * 50:,})",
            ms,
            "ms",
            base,
            "empty page",
            note="what the cursor mode avoids",
        )
    )


def _export_figures(args) -> None:
    from benchmarks.child import emit

    out = dbs.VAR / "export.csv"
    out.parent.mkdir(parents=True, exist_ok=True)  # a reused database skipped dbs.fresh
    seconds, rss, lines, finished, tree = _export(out, args.export_budget)
    out.unlink(missing_ok=True)
    emit(
        Figure(
            "queries",
            "full CSV export (subprocess)",
            lines / seconds,
            "rows/s",
            target=">= 50,000 rows/s",
            ok=lines / seconds >= 50_000,
            note=f"{lines:,} rows in {seconds:.1f} s"
            + ("" if finished else f" (stopped at the {args.export_budget:.0f} s budget)"),
        )
    )
    emit(
        Figure(
            "queries",
            "full CSV export peak RSS, all its processes",
            tree,
            "MiB",
            target="<= 200 MB",
            ok=tree * 1.048576 <= 200,
            note=f"largest single process {rss:.0f} MiB (VmHWM); sampled every 50 ms",
        )
    )


if __name__ == "__main__":
    main()
