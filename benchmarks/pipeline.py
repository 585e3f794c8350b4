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
    from tracking.detection import detect_batch
    from tracking.ingest import build_activity, ingest
    from tracking.models import Activity
    from tracking.testing.geoip import build_databases

    build_databases(dbs.VAR / "geoip")
    n, size = args.events, args.batch
    evs = list(make_events(n, users=300))
    batches = [evs[i : i + size] for i in range(0, n, size)]

    # Warm the caches (GeoIP readers, UA parser, rule compilation) outside the timings.
    with transaction.atomic():
        detect_batch([build_activity(e) for e in batches[0][:50]])
        transaction.set_rollback(True)

    started = time.perf_counter()
    built = [sorted((build_activity(e) for e in b), key=lambda a: a.timestamp) for b in batches]
    build_s = time.perf_counter() - started
    emit(
        Figure(
            "detection", "build + enrich only (baseline)", n / build_s, "events/s", note="1 core"
        )
    )

    findings = 0
    with transaction.atomic():
        started = time.perf_counter()
        for acts in built:
            findings += len(detect_batch(acts))
        detect_s = time.perf_counter() - started
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
            note=f"{findings} findings, {flagged} flagged of {n}",
        )
    )
    started = time.perf_counter()
    stored = 0
    for b in batches:
        stored += ingest(b).stored
    ingest_s = time.perf_counter() - started
    emit(
        Figure(
            "detection",
            f"full pipeline ingest() on {connection.vendor}, per core",
            stored / ingest_s,
            "events/s",
            n / build_s,
            "build+enrich",
            note=f"offered {n}, stored {stored}, table {Activity.objects.count()}",
        )
    )


if __name__ == "__main__":
    main()
