#!/usr/bin/env python
"""Every benchmark of the project in one command; each figure next to its same-run baseline.

    make bench                      # full run (~45 min on 2 cores; the 1M-row load, ~10 min, is kept)
    .venv/bin/python benchmarks/run.py --quick          # a short run (about 8 minutes)
    .venv/bin/python benchmarks/run.py --only queries --rows 1000000
    .venv/bin/python benchmarks/run.py --only requests --split    # web tier pinned to core 0
    .venv/bin/python benchmarks/run.py --only verdict --only kill

Sections: requests (gunicorn + wrk, SQLite WAL and PostgreSQL, against django-easy-audit and
DRF-API-Logger), ingestion (async writer and Celery workers vs COPY and bulk_create),
detection (events/s per core), costs (CPU per event of each part of the write path), queries
(list pages, paging, stats, admin, CSV export at scale), verdict (synchronous @track: durable
at the response, and how long until its activity row with its verdict exists), kill (a
gunicorn worker, and the Celery worker, SIGKILLed under load: acknowledged requests against
rows stored) and threads (a saturated server's CPU per request: request threads, writer
thread, PostgreSQL). ``--split`` runs the request benchmark
with the web tier pinned to one core and everything else to the other (benchmarks/split.py).
Figures go to stdout and ``var/bench/results-<sections>.json``; benchmarks/README.md records them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run as a script: import from the checkout, never shadow top-level modules with this folder.
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks"]
os.environ.setdefault("PYTHONPATH", str(ROOT))

SECTIONS = ("requests", "ingestion", "detection", "costs", "queries", "verdict", "kill", "threads")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="short runs, 50,000 rows for queries")
    parser.add_argument("--only", choices=SECTIONS, action="append", help="run only these sections")
    parser.add_argument("--backends", default="sqlite,postgresql", help="for the request benchmark")
    parser.add_argument("--rows", type=int, default=None, help="activities for the query benchmark")
    parser.add_argument("--seconds", type=float, default=None, help="per wrk measurement")
    parser.add_argument(
        "--events", type=int, default=None, help="events for the ingestion benchmark"
    )
    parser.add_argument(
        "--split",
        action="store_true",
        help="requests (PostgreSQL) and verdict with gunicorn pinned to one core, wrk, workers "
        "and services to the other (BENCH_WEB_CPUS / BENCH_OTHER_CPUS)",
    )
    parser.add_argument(
        "--kill-variants",
        default=None,
        help="for the kill benchmark, e.g. thread,durable,celery-redis,celery-rabbitmq,sync",
    )
    args = parser.parse_args(argv)

    from benchmarks import dbs
    from benchmarks.report import Report, machine

    sections = args.only or list(SECTIONS)
    backends = [b for b in args.backends.split(",") if b]
    pg = dbs.pg_available()
    if not pg:
        print("PostgreSQL not reachable at BENCH_PG_URL: PostgreSQL figures are skipped")
        backends = [b for b in backends if b != "postgresql"]
    report = Report()
    print("machine:", ", ".join(f"{k}={v}" for k, v in machine().items()))
    failed = []
    for section in sections:
        print(f"\n== {section}", flush=True)
        started = time.monotonic()
        try:
            if section == "requests" and args.split:
                from benchmarks import split

                split.run(report, seconds=args.seconds or (2 if args.quick else 5))
            elif section == "requests":
                from benchmarks import overhead

                overhead.run(
                    report,
                    backends=backends,
                    seconds=args.seconds or (2 if args.quick else 5),
                    quick=args.quick,
                )
            elif section == "ingestion":
                from benchmarks import ingestion

                if pg:
                    ingestion.run(report, events=args.events or (3_000 if args.quick else 10_000))
            elif section == "detection":
                from benchmarks import pipeline

                pipeline.run(report, events=args.events or (2_000 if args.quick else 10_000))
            elif section == "costs":
                from benchmarks import costs

                if pg:
                    costs.run(report, events=args.events or (3_000 if args.quick else 10_000))
            elif section == "queries":
                from benchmarks import scale

                if pg:
                    scale.run(report, rows=args.rows or (50_000 if args.quick else 1_000_000))
            elif section == "verdict":
                from benchmarks import verdict

                if pg:
                    verdict.run(
                        report, seconds=args.seconds or (2 if args.quick else 5), split=args.split
                    )
            elif section == "kill":
                from benchmarks import kill

                if pg:
                    kill.run(report, variants=args.kill_variants, quick=args.quick)
            elif section == "threads":
                from benchmarks import threads

                if pg:
                    threads.run(report, seconds=args.seconds or (2 if args.quick else 5))
        except Exception:
            traceback.print_exc()
            failed.append(section)
        print(f"   ({section}: {time.monotonic() - started:.0f} s)", flush=True)
    print()
    print(report.summary())
    suffix = ("-split" if args.split else "") + ("-quick" if args.quick else "")
    report.save(dbs.VAR / f"results-{'-'.join(sections)}{suffix}.json")
    if failed:
        print(f"\nFAILED sections: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
