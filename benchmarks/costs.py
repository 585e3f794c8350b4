"""CPU per event of each part of the write path, in-process, for the arithmetic of the request
targets (benchmarks/README.md, "Why three targets are out of reach on this machine").

- the request thread's share of ``@track(async_log=True)`` (building and queueing the event),
  against the same view untracked; then the same inside whole requests, by part
  (``benchmarks/whole_requests.py``);
- the batch step (``ingest`` + sealing) per event, for anonymous API traffic and for the
  workload's logged-in users: this process's CPU and the PostgreSQL backend's CPU;
- a synchronous ``@track`` request: both CPUs;
- one finished row inserted and committed on its own: the durable write a synchronous request
  cannot avoid.

The PostgreSQL figures read the backend's CPU counters from /proc, so they need the server on
this machine (as in the other benchmarks); otherwise they are left out.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import django

from . import dbs, whole_requests

SETTINGS = "benchmarks.project.settings_tracking"
DB = "costs"


def run(report, *, events: int) -> None:
    from . import child

    url = dbs.fresh("postgresql", DB, SETTINGS)
    child.run(report, "benchmarks.costs", ["--events", str(events)], settings=SETTINGS, db_url=url)


def _backend_cpu() -> Callable[[], float | None]:
    """Seconds of CPU the PostgreSQL backend of Django's connection has used so far."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    tick = os.sysconf("SC_CLK_TCK")

    def read() -> float | None:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            return None  # the server runs elsewhere
        return (int(fields[11]) + int(fields[12])) / tick

    return read


def _measure(step: Callable[[int], None], n: int) -> tuple[float, float | None]:
    """(process CPU, backend CPU) in µs per call of ``step(i)`` for i in range(n)."""
    backend = _backend_cpu()
    pg0, cpu0 = backend(), time.process_time()
    for i in range(n):
        step(i)
    cpu = (time.process_time() - cpu0) / n * 1e6
    pg1 = backend()
    return cpu, None if pg0 is None or pg1 is None else (pg1 - pg0) / n * 1e6


def _anonymous(events):
    for e in events:
        e.username, e.session_id, e.user_id = "", "", None
        e.type, e.method, e.endpoint, e.status, e.params = "API", "GET", "/plain-async/", 200, {}
    return events


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=10_000)
    args = parser.parse_args()
    django.setup()
    from django.test import RequestFactory, override_settings

    from benchmarks.child import emit
    from benchmarks.project import views
    from benchmarks.report import Figure
    from benchmarks.workload import BROWSERS, client_addresses
    from benchmarks.workload import events as make_events
    from tracking.integrity.sealing import seal_pending
    from tracking.pipeline import journal, writer
    from tracking.pipeline.ingest import ingest
    from tracking.simulator.geoip import build_databases

    build_databases(dbs.VAR / "geoip")
    n, batch = args.events, 400
    tracked = views.tracked_views()
    factory = RequestFactory()
    ips = client_addresses()
    requests = [
        factory.get(
            "/",
            HTTP_X_FORWARDED_FOR=ips[i % len(ips)],
            HTTP_USER_AGENT=BROWSERS[i % len(BROWSERS)],
            REMOTE_ADDR="127.0.0.1",
        )
        for i in range(n)
    ]

    # 1. The request thread: the writer's queue replaced by a list, so nothing else runs.
    # The event is journaled (TRACKING_SPOOL_DIR) as on a real site; the lines are released
    # afterwards so no later process replays them.
    queued: list = []
    real_submit = writer.submit
    writer.submit = queued.append
    durable_n = min(n, 2000)
    try:
        for r in requests[:500]:  # warm
            views.plain(r)
            tracked["plain-async"](r)
        plain, _ = _measure(lambda i: views.plain(requests[i]), n)
        async_view, _ = _measure(lambda i: tracked["plain-async"](requests[i]), n)
        # Fresh requests: a request object is recorded once (see the synchronous step below).
        fresh = [
            factory.get("/", HTTP_USER_AGENT=BROWSERS[i % len(BROWSERS)], REMOTE_ADDR="127.0.0.1")
            for i in range(durable_n)
        ]
        with override_settings(TRACKING_DURABLE_HANDOFF=True):
            start = time.perf_counter()
            durable_cpu, _ = _measure(lambda i: tracked["plain-async"](fresh[i]), durable_n)
            durable_wall = (time.perf_counter() - start) / durable_n * 1e6
    finally:
        writer.submit = real_submit
        journal.release(queued)
    emit(
        Figure(
            "costs",
            "request thread of an async_log=True view (build + journal + queue the event)",
            async_view - plain,
            "µs/request",
            plain,
            "the untracked view",
            note=f"CPU time, {n:,} requests through RequestFactory; {len(queued):,} queued; "
            "the journal write (no fsync) survives a SIGKILL of the process",
        )
    )
    emit(
        Figure(
            "costs",
            "request thread of an async_log=True view, TRACKING_DURABLE_HANDOFF=True, one thread",
            durable_wall - plain,
            "µs/request",
            plain,
            "the untracked view",
            note=f"wall time (waits for the journal's fdatasync: one per request with one "
            f"request thread, shared by concurrent threads), {durable_cpu - plain:.0f} µs CPU; "
            "survives a machine crash",
        )
    )

    # 1b. The same work inside whole requests, by part (benchmarks/whole_requests.py).
    whole_requests.run(emit, min(n, 5000), async_view - plain)

    # 2. The batch step per event (ingest + sealing), as the writer runs it.
    def batches(evs):
        chunks = [evs[i : i + batch] for i in range(0, len(evs), batch)]

        def step(k: int) -> None:
            ingest(chunks[k], assume_new=True)
            seal_pending()

        return chunks, step

    for label, evs in (
        ("anonymous API traffic", _anonymous(list(make_events(n + 2 * batch, seed=11)))),
        ("logged-in users (the ingestion workload)", list(make_events(n + 2 * batch, seed=12))),
    ):
        chunks, step = batches(evs)
        step(0)  # warm: profiles, model version, statements
        step(1)
        cpu, pg = _measure(lambda k, step=step: step(k + 2), len(chunks) - 2)
        per = len(chunks[2])
        emit(
            Figure(
                "costs",
                f"batch step per event, {label}",
                cpu / per,
                "µs/event",
                note=f"this process's CPU, batches of {batch} with sealing; PostgreSQL backend "
                + ("not on this machine" if pg is None else f"{pg / per:.0f} µs/event"),
            )
        )

    # 3. A synchronous request (its intake INSERT, then the writer's batch step), and 4. the
    # durable one-row write it cannot avoid. Fresh requests: a request object is recorded once.
    sync_n = min(n, 3000)
    sync_requests = [
        factory.get(
            f"/sync/{i}/",
            HTTP_X_FORWARDED_FOR=ips[i % len(ips)],
            HTTP_USER_AGENT=BROWSERS[i % len(BROWSERS)],
            REMOTE_ADDR="127.0.0.1",
        )
        for i in range(sync_n)
    ]
    for r in sync_requests[:200]:
        tracked["plain-sync"](r)
    writer.get_writer().flush(60)

    def sync_step(i: int) -> None:
        tracked["plain-sync"](sync_requests[200 + i])
        if i == sync_n - 201:  # the last one: the writer's batch steps are counted too
            writer.get_writer().flush(60)

    cpu, pg = _measure(sync_step, sync_n - 200)
    emit(
        Figure(
            "costs",
            "synchronous @track request, anonymous (request + the writer's batch step)",
            cpu,
            "µs/request",
            plain,
            "the untracked view",
            note="this process's CPU, both threads; PostgreSQL backend of the request's "
            "connection " + ("not on this machine" if pg is None else f"{pg:.0f} µs/request"),
        )
    )
    floor = _one_row_writes(min(n, 2000))
    if floor is not None:
        emit(
            Figure(
                "costs",
                "one finished row INSERTed and COMMITted alone, PostgreSQL CPU",
                floor,
                "µs/row",
                note="the durable write every synchronous request pays, before any tracking work",
            )
        )


def _one_row_writes(n: int) -> float | None:
    """PostgreSQL CPU per one-row INSERT + COMMIT of rows built (enriched, encrypted, MAC'd)
    beforehand, so only the write is timed."""
    from django.db import transaction

    from benchmarks.workload import events as make_events
    from tracking.integrity import macs as integrity
    from tracking.models import Activity
    from tracking.pipeline.rows import build_activity
    from tracking.storage import copyinsert

    rows = []
    for e in make_events(n, seed=13):
        act = build_activity(e)
        act.mac, _ = integrity.mac_and_leaf(act)
        rows.append(act)

    def write(i: int) -> None:
        with transaction.atomic():
            copyinsert.insert(Activity, [rows[i]])

    _, pg = _measure(write, n)
    return pg


if __name__ == "__main__":
    main()
