"""Detection and the whole write pipeline, events/s on one core (one process, one thread).

``detect_batch`` runs every configured detector and the shipped rule pack on enriched,
unsaved activities in writer-sized batches, inside a transaction that is rolled back (so each
batch sees the profiles the previous ones built, and nothing is kept). The baseline is the
same batches built and enriched without detection. The full pipeline (``ingest``: enrich,
redact, detect, MAC, insert, rollups, seal) is measured the same way, on PostgreSQL.
"""

from __future__ import annotations

import argparse
import time

import django

from . import dbs

SETTINGS = "benchmarks.project.settings_tracking"
DB = "pipeline"


def run(report, *, events: int) -> None:
    from . import child

    backend = "postgresql" if dbs.pg_available() else "sqlite"
    url = dbs.fresh(backend, DB, SETTINGS)
    child.run(
        report, "benchmarks.pipeline", ["--events", str(events)], settings=SETTINGS, db_url=url
    )
    _detection_engineers_benchmark(report, quick=events < 5000)


def _detection_engineers_benchmark(report, *, quick: bool) -> None:
    """``benchmarks/detection/throughput.py`` (the detection work's own, with a trained
    IsolationForest and a week of history), reported here as one more figure."""
    import re
    import subprocess
    import sys

    from .report import Figure

    script = dbs.ROOT / "benchmarks" / "detection" / "throughput.py"
    if not script.exists():
        return
    args = ["--users", "60" if quick else "150", "--days", "1" if quick else "2"]
    out = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, cwd=dbs.ROOT
    ).stdout
    m = re.search(r"([\d,]+) events/s per core; (\d+) findings", out)
    if not m:
        print("    benchmarks/detection/throughput.py gave no figure:\n" + out[-1500:])
        return
    rate = float(m.group(1).replace(",", ""))
    detail = re.search(r"(\d+) events in ([\d.]+) s CPU", out)
    report.add(
        Figure(
            "detection",
            "detect_batch, trained model + history (detection/throughput.py)",
            rate,
            "events/s",
            target=">= 5,000 events/s per core",
            ok=rate >= 5000,
            note=f"CPU time; {detail.group(1) if detail else '?'} events, {m.group(2)} findings",
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    django.setup()
    from django.db import connection, transaction

    from benchmarks.child import emit
    from benchmarks.report import Figure
    from benchmarks.workload import events as make_events
    from tracking.detection.runner import detect_batch
    from tracking.models import Activity
    from tracking.pipeline.ingest import ingest
    from tracking.pipeline.rows import build_activity
    from tracking.simulator.geoip import build_databases

    build_databases(dbs.VAR / "geoip")
    n, size = args.events, args.batch
    evs = list(make_events(n, users=300))
    batches = [evs[i : i + size] for i in range(0, n, size)]

    # Warm the caches (GeoIP readers, UA parser, rule compilation) outside the timings.
    with transaction.atomic():
        detect_batch([build_activity(e) for e in batches[0][:50]])
        transaction.set_rollback(True)

    # CPU time of this single-threaded process: the per-core cost whatever else runs on the box.
    started = time.process_time()
    built = [sorted((build_activity(e) for e in b), key=lambda a: a.timestamp) for b in batches]
    build_s = time.process_time() - started
    emit(
        Figure(
            "detection", "build + enrich only (baseline)", n / build_s, "events/s", note="CPU time"
        )
    )

    findings = 0
    with transaction.atomic():
        started = time.process_time()
        for acts in built:
            findings += len(detect_batch(acts))
        detect_s = time.process_time() - started
        transaction.set_rollback(True)
    rate = n / detect_s
    flagged = sum(1 for b in built for a in b if a.flagged)
    emit(
        Figure(
            "detection",
            "detect_batch: every detector + rule pack, per core",
            rate,
            "events/s",
            n / build_s,
            "build+enrich",
            ">= 5,000 events/s per core",
            rate >= 5000,
            note=f"CPU time; {findings} findings, {flagged} flagged of {n}",
        )
    )
    started, cpu0 = time.perf_counter(), time.process_time()
    stored = 0
    for b in batches:
        stored += ingest(b).stored
    ingest_s = time.perf_counter() - started
    ingest_cpu = time.process_time() - cpu0
    emit(
        Figure(
            "detection",
            f"full pipeline ingest() on {connection.vendor}, per core",
            stored / ingest_s,
            "events/s",
            n / build_s,
            "build+enrich",
            note=f"wall time; {stored / ingest_cpu:,.0f}/s by this process's CPU time; "
            f"offered {n}, stored {stored}, table {Activity.objects.count()}",
        )
    )


if __name__ == "__main__":
    main()
