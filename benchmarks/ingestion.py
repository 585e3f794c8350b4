"""Ingestion into PostgreSQL: the async writer and two Celery workers against the physical
baseline, the same rows written by plain ``COPY`` and by ``bulk_create``.

Run by ``run.py`` in a child process (``python -m benchmarks.ingestion``) with
``DJANGO_SETTINGS_MODULE=benchmarks.project.settings_tracking`` on a fresh database. Every
method checks events offered = events stored.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import textwrap
import time
import uuid

import django

SETTINGS = "benchmarks.project.settings_tracking"


def run(report, *, events: int) -> None:
    from . import child, dbs

    url = dbs.fresh("postgresql", "ingest", SETTINGS)
    child.run(
        report, "benchmarks.ingestion", ["--events", str(events)], settings=SETTINGS, db_url=url
    )


WORKER = textwrap.dedent(
    """
    import os
    import django
    django.setup()
    if os.environ.get("BENCH_DIE_ON_RECEIPT"):  # benchmarks/kill.py, celery-redis-receipt
        import signal
        from kombu.transport import redis as kombu_redis
        _append, _trigger = kombu_redis.QoS.append, os.environ["BENCH_DIE_ON_RECEIPT"]
        def _append_or_die(self, message, delivery_tag):
            if os.path.exists(_trigger):
                os.kill(os.getpid(), signal.SIGKILL)
            return _append(self, message, delivery_tag)
        kombu_redis.QoS.append = _append_or_die
    from celery import Celery
    app = Celery("bench-ingest")
    from django.conf import settings
    app.conf.update(broker_url=settings.CELERY_BROKER_URL, worker_prefetch_multiplier=1,
                    broker_connection_retry_on_startup=True, worker_hijack_root_logger=False,
                    broker_transport_options=getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {}))
    app.set_default(); app.set_current()
    import tracking.pipeline.tasks  # noqa: F401
    app.worker_main(["worker", "--pool=solo", "--loglevel=WARNING", "-Q", os.environ["BENCH_QUEUE"],
                     "-n", os.environ["BENCH_NAME"], "--without-gossip", "--without-mingle"])
    """
)


def _truncate() -> None:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            "TRUNCATE tracking_activity, tracking_finding, tracking_seal, tracking_rollup, "
            "tracking_dailyrollup, tracking_profile, tracking_counter"
        )


def _count() -> int:
    from tracking.models import Activity

    return Activity.objects.count()


def _rows(events):
    """Activity objects as the writer would store them (encrypted, MAC'd), built up front so
    the baselines time the database write alone."""
    from tracking.integrity.macs import row_mac
    from tracking.models import Activity

    rows = []
    for e in events:
        a = Activity(
            id=uuid.UUID(e.id),
            timestamp=e.timestamp,
            type=e.type,
            username=e.username,
            session_id=e.session_id,
            ip_address=e.ip_address,
            remote_addr=e.ip_address,
            user_agent=e.user_agent,
            endpoint=e.endpoint,
            method=e.method,
            status=e.status,
            duration=e.duration,
            headers=e.headers,
            params=e.params,
        )
        a.mac = row_mac(a)
        for name in ("headers", "params"):
            field = Activity._meta.get_field(name)
            a.__dict__[name] = field.pre_save(a, True)  # Ciphertext: bulk_create keeps it
        rows.append(a)
    return rows


def _copy(rows) -> float:
    from django.db import connection

    from tracking.models import Activity

    fields = Activity._meta.concrete_fields
    columns = ", ".join(f'"{f.column}"' for f in fields)
    encrypted = {"headers", "params"}
    tuples = [
        [
            f.get_db_prep_save(
                a.__dict__[f.attname] if f.name in encrypted else getattr(a, f.attname), connection
            )
            for f in fields
        ]
        for a in rows
    ]
    started = time.perf_counter()
    with connection.cursor() as cur:
        raw = cur.cursor  # psycopg's cursor: COPY is not part of Django's API
        with raw.copy(f"COPY tracking_activity ({columns}) FROM STDIN") as copy:  # noqa: S608
            for row in tuples:
                copy.write_row(row)
    return time.perf_counter() - started


def _bulk_create(rows) -> float:
    from tracking.models import Activity

    started = time.perf_counter()
    Activity.objects.bulk_create(rows, batch_size=1000)
    return time.perf_counter() - started


def _wait(n: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _count() >= n:
            return True
        time.sleep(0.1)
    return False


def _writer(events) -> float:
    from tracking.pipeline import writer

    events = list(events)
    started = time.perf_counter()
    for e in events:
        writer.submit(e)
    writer.flush(timeout=600)
    _wait(len(events), 60)
    return time.perf_counter() - started


def _celery(events, batch: int) -> float:
    from celery import Celery
    from django.conf import settings as dj

    from tracking.pipeline import tasks

    broker = dj.CELERY_BROKER_URL
    app = Celery("bench-client")
    app.conf.update(broker_url=broker, broker_connection_retry_on_startup=True)
    app.set_default()
    app.set_current()
    queue = f"bench-ingest-{os.getpid()}"
    names = [f"bench{i}-{uuid.uuid4().hex[:6]}@localhost" for i in (1, 2)]
    env = dict(os.environ, BENCH_QUEUE=queue)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER], env=env | {"BENCH_NAME": n}, start_new_session=True
        )
        for n in names
    ]
    try:
        ready: set[str] = set()
        deadline = time.monotonic() + 60
        while len(ready) < 2 and time.monotonic() < deadline:
            for reply in app.control.ping(destination=names, timeout=0.5) or []:
                ready |= set(reply)
        if len(ready) < 2:
            raise RuntimeError("celery workers did not start")
        started = time.perf_counter()
        from django.test import override_settings

        with override_settings(TRACKING_CELERY_QUEUE=queue):
            for i in range(0, len(events), batch):
                tasks.publish(events[i : i + batch])
        _wait(len(events), 600)
        return time.perf_counter() - started
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=20)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=30_000)
    args = parser.parse_args()
    django.setup()
    from benchmarks.child import emit
    from benchmarks.report import Figure
    from benchmarks.workload import events as make_events
    from tracking.conf import tracking_settings

    n = args.events
    events = list(make_events(n))
    _truncate()
    rows = _rows(events)
    copy_rate = n / _copy(rows)
    assert _count() == n
    emit(
        Figure(
            "ingestion",
            "PostgreSQL COPY (physical baseline)",
            copy_rate,
            "rows/s",
            note=f"{n} rows",
        )
    )
    _truncate()
    bulk_rate = n / _bulk_create(rows)
    assert _count() == n
    emit(Figure("ingestion", "PostgreSQL bulk_create", bulk_rate, "rows/s", copy_rate, "COPY"))

    for label, runner in (
        ("async writer (thread, 1 process)", lambda: _writer(make_events(n))),
        (
            "Celery, 2 worker processes",
            lambda: _celery(list(make_events(n)), int(tracking_settings.BATCH_SIZE)),
        ),
    ):
        _truncate()
        try:
            seconds = runner()
        except Exception as exc:  # a broken path is a figure of its own, not a crash
            emit(
                Figure(
                    "ingestion", label, 0.0, "events/s", copy_rate, "COPY", note=f"FAILED: {exc}"
                )
            )
            continue
        stored = _count()
        rate = stored / seconds
        emit(
            Figure(
                "ingestion",
                label,
                rate,
                "events/s",
                copy_rate,
                "COPY",
                ">= 0.5 of COPY",
                rate / copy_rate >= 0.5 and stored == n,
                note=f"offered {n}, stored {stored}" + ("" if stored == n else " LOST EVENTS"),
            )
        )


if __name__ == "__main__":
    main()
