"""Detection throughput: events per second per core through ``detect_batch`` with every built-in
detector (IsolationForest trained) and the whole rule pack.

    PYTHONPATH=. .venv/bin/python benchmarks/detection/throughput.py [--users 200] [--batch 500]

A temporary SQLite project gets one week of history (imported, then ``tracking train``); the
next days are enriched into unsaved activities and fed to ``detect_batch`` in batches, storing
each batch afterwards (so profiles, counters and threshold look-backs stay realistic). Only the
``detect_batch`` calls are timed; the process is single-threaded, so the rate is per core.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.detection.run import configure, write  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument(
        "--days", type=int, default=3, help="measured days after the week of history"
    )
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--target", type=float, default=5000.0)
    parser.add_argument("--profile", action="store_true", help="print the hottest functions")
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="server URL (e.g. postgres://postgres@127.0.0.1:5432/postgres): a temporary database "
        "is created there and dropped afterwards; default SQLite",
    )
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="trk-detect-tput-"))
    database_url = None
    if args.postgres:
        database_url = _create_database(args.postgres)
    configure(workdir, database_url)
    try:
        return _run(args, workdir)
    finally:
        if database_url:
            from django.db import connections

            connections.close_all()
            _drop_database(args.postgres, database_url)


def _admin(server_url: str):
    import psycopg

    return psycopg.connect(server_url, autocommit=True)


def _create_database(server_url: str) -> str:
    import os

    name = f"trk_detect_tput_{os.getpid()}"
    with _admin(server_url) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return server_url.rsplit("/", 1)[0] + "/" + name


def _drop_database(server_url: str, database_url: str) -> None:
    name = database_url.rsplit("/", 1)[1]
    with _admin(server_url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


def _run(args, workdir: Path) -> int:
    from django.core.management import call_command
    from django.db import transaction

    from tracking.detection.config import pipeline
    from tracking.detection.modelstore import refresh_models
    from tracking.detection.runner import detect_batch
    from tracking.events import Event
    from tracking.integrity import macs as integrity
    from tracking.models import Activity, Finding
    from tracking.pipeline.rows import build_activity
    from tracking.simulator.geoip import build_databases
    from tracking.simulator.traffic import DEFAULT_START, simulate, strip_labels

    build_databases(workdir / "geoip")
    call_command("migrate", verbosity=0)
    split = DEFAULT_START + timedelta(days=7)
    history, measured = [], []
    for r in simulate(users=args.users, days=7 + args.days, seed=1, attacks_from=split):
        (history if r["timestamp"] < split.isoformat() else measured).append(r)
    write(history, workdir / "history.ndjson")
    call_command("tracking", "import", str(workdir / "history.ndjson"), "--quiet")
    call_command("tracking", "train")

    pipe = pipeline()
    refresh_models(pipe)  # a running worker has its model loaded already; do not time that
    activities = [build_activity(Event.from_dict(strip_labels(r))) for r in measured]
    elapsed = cpu = 0.0
    findings = 0
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
    for i in range(0, len(activities), args.batch):
        batch = sorted(activities[i : i + args.batch], key=lambda a: a.timestamp)
        with transaction.atomic():
            t0, c0 = time.perf_counter(), time.process_time()
            if profiler:
                profiler.enable()
            rows = detect_batch(batch)
            if profiler:
                profiler.disable()
            elapsed += time.perf_counter() - t0
            cpu += time.process_time() - c0
            for a in batch:
                a.mac = integrity.row_mac(a)
            Activity.objects.bulk_create(batch)
            Finding.objects.bulk_create(rows)
            findings += len(rows)
    if profiler:
        import pstats

        pstats.Stats(profiler).sort_stats("tottime").print_stats(40)
    # CPU time of this single-threaded process: the per-core cost, whatever else runs on the box.
    rate = len(activities) / cpu if cpu else float("inf")
    names = ", ".join(d.name for d in pipe.detectors)
    print(
        f"detectors: {names}; rules: {len(pipe.rules)}; model trained: {any(pipe.versions.values())}"
    )
    print(
        f"{len(activities)} events in {cpu:.2f} s CPU ({elapsed:.2f} s wall) of detect_batch "
        f"(batches of {args.batch}): "
        f"{rate:,.0f} events/s per core; {findings} findings"
    )
    ok = rate >= args.target
    print(f"target >= {args.target:,.0f} events/s per core: {'OK' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
