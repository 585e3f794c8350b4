"""Acknowledged events after a SIGKILL under load (issue #20, point 3).

``run.py --only kill [--kill-variants thread,durable,celery-redis,celery-rabbitmq,sync]``.

For each variant, a gunicorn server (2 sync workers) with ``@track(async_log=True)`` on a fresh
PostgreSQL database and a spool folder of its own. A Python client (4 threads) sends requests
to ``/marked-async/<marker>/``, one unique path per request, and records which were answered
200 (acknowledged). Mid-load one gunicorn worker is SIGKILLed (gunicorn respawns it); for the
Celery variants the Celery worker is SIGKILLed at the same moment and a new one started a
second later, as a supervisor would. The load goes on for a few seconds, then the benchmark
waits (up to ``--kill-wait`` seconds, 120 by default, polling every second) for replay and
redelivery by whatever the code does on its own — no ``tracking flush``, no operator — and
matches the rows' endpoints against the acknowledged markers:

- lost = acknowledged but not stored (the target is 0);
- duplicates = markers stored more than once;
- stored without acknowledgement = requests in flight when the worker died (not a fault).

Variants: ``thread`` (the default writer thread), ``durable`` (``TRACKING_DURABLE_HANDOFF =
True``), ``celery-redis``, ``celery-redis-receipt`` (the Celery worker dies as it takes a
message, after Redis handed it over and before kombu recorded it as unacknowledged: the
message is gone from Redis, and only the publisher's confirmation brings it back) and
``celery-rabbitmq`` (``TRACKING_ASYNC_HANDOFF = "celery"``, one
Celery worker; brokers from ``BENCH_BROKER_URL`` and ``BENCH_AMQP_URL``). Redis keeps a killed
worker's unacknowledged batch until the broker's visibility timeout: 120 s here, as
docs/deployment.md asks (``BENCH_VISIBILITY_TIMEOUT`` to change it, ``0`` for kombu's default of
one hour); the wait for that variant is stretched to the timeout + 60 s. ``sync``: synchronous
``@track`` on ``/marked-sync/<marker>/`` (acknowledged = committed to the intake before the
response; the killed worker's intake rows are stored by the respawned worker's writer, see
docs/pipeline.md, "Synchronous requests: the intake").
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import threading
import time
from dataclasses import dataclass, replace

from . import dbs, pin
from .overhead import SETTINGS, VARIANTS, Server, _free_port, _settle, _start_celery_worker
from .report import Figure, Report

BACKEND = "postgresql"
REDIS_URL = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/14")
AMQP_URL = os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
PATH = "/marked-async/{}/"
SYNC_PATH = "/marked-sync/{}/"
# Redis redelivers a dead worker's batch after the visibility timeout: docs/deployment.md's
# value (120 s, what system checks W014/W015 ask for) unless BENCH_VISIBILITY_TIMEOUT says
# otherwise; "0" leaves kombu's default (one hour), as on an install that ignores the check.
VISIBILITY_TIMEOUT = os.environ.get("BENCH_VISIBILITY_TIMEOUT", "120")
CLIENTS = 4
RECEIPT_TRIGGER = dbs.VAR / "kill-die-on-receipt"


@dataclass(frozen=True)
class KillVariant:
    name: str
    env: tuple[tuple[str, str], ...]
    celery: bool = False
    path: str = PATH  # the view: async_log=True, or synchronous (SYNC_PATH)


KILL_VARIANTS = {
    "thread": KillVariant("thread", (("BENCH_HANDOFF", "thread"),)),
    "durable": KillVariant(
        "durable", (("BENCH_HANDOFF", "thread"), ("BENCH_DURABLE_HANDOFF", "1"))
    ),
    "celery-redis": KillVariant(
        "celery-redis",
        (
            ("BENCH_HANDOFF", "celery"),
            ("BENCH_BROKER_URL", REDIS_URL),
            ("BENCH_VISIBILITY_TIMEOUT", VISIBILITY_TIMEOUT),
        ),
        True,
    ),
    "celery-rabbitmq": KillVariant(
        "celery-rabbitmq", (("BENCH_HANDOFF", "celery"), ("BENCH_BROKER_URL", AMQP_URL)), True
    ),
    "sync": KillVariant("sync", (("BENCH_HANDOFF", "thread"),), path=SYNC_PATH),
    # The Celery worker dies at the worst moment for Redis, every run: as it takes its next
    # message, after BRPOP and before kombu records it as unacknowledged (the trigger file
    # makes the worker SIGKILL itself there; benchmarks/ingestion.py's WORKER).
    "celery-redis-receipt": KillVariant(
        "celery-redis-receipt",
        (
            ("BENCH_HANDOFF", "celery"),
            ("BENCH_BROKER_URL", REDIS_URL),
            ("BENCH_VISIBILITY_TIMEOUT", VISIBILITY_TIMEOUT),
            ("BENCH_DIE_ON_RECEIPT", str(RECEIPT_TRIGGER)),
        ),
        True,
    ),
}


class Client:
    """Threads sending one uniquely marked request after another; 200 = acknowledged."""

    def __init__(self, port: int, prefix: str, path: str = PATH) -> None:
        self.port, self.prefix, self.path = port, prefix, path
        self.acked: dict[str, str] = {}  # marker -> the serving process's id (the body)
        self.failed = 0
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._loop, args=(i,)) for i in range(CLIENTS)]

    def _loop(self, i: int) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            marker = f"{self.prefix}-{i}-{n}"
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                conn.request("GET", self.path.format(marker))
                resp = conn.getresponse()
                body = resp.read().decode(errors="replace")
                ok = resp.status == 200
            except OSError:  # the worker serving it was killed: not acknowledged
                ok, body = False, ""
            finally:
                conn.close()
            with self.lock:
                if ok:
                    self.acked[marker] = body
                else:
                    self.failed += 1

    def __enter__(self) -> Client:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()


def _stored(db: str, path: str = PATH) -> dict[str, int]:
    """marker -> rows stored with its path."""
    import psycopg

    prefix = path.format("")[:-1]
    with psycopg.connect(dbs.url(BACKEND, db)) as conn:
        rows = conn.execute(
            "SELECT endpoint, count(*) FROM tracking_activity WHERE endpoint LIKE %s "
            "GROUP BY endpoint",
            (prefix + "%",),
        ).fetchall()
    return {endpoint[len(prefix) :].strip("/"): n for endpoint, n in rows}


def _gunicorn_workers(srv: Server) -> list[int]:
    assert srv.proc is not None
    return [p for p in pin.tree([srv.proc.pid]) if p != srv.proc.pid]


def _state(pid: int) -> str:
    try:
        text = open(f"/proc/{pid}/stat").read()
    except OSError:
        return "?"
    return text[text.rindex(")") + 2]


def _kill_group(proc, *, busy_within: float = 3.0) -> bool:
    """SIGKILL the process group of ``proc``, preferably while ``proc`` is on a CPU (a Celery
    worker in the middle of a batch); True if it was running when killed."""
    deadline = time.monotonic() + busy_within
    while _state(proc.pid) != "R" and time.monotonic() < deadline:
        time.sleep(0.0005)
    busy = _state(proc.pid) == "R"
    try:
        os.killpg(os.getpgid(proc.pid), signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    return busy


def measure(report: Report, kv: KillVariant, *, before: float, after: float, wait: float) -> None:
    db = f"kill_{kv.name.replace('-', '_')}"
    spool = dbs.VAR / f"kill-spool-{kv.name}"
    shutil.rmtree(spool, ignore_errors=True)
    spool.mkdir(parents=True)
    base = VARIANTS["track-async"]
    variant = replace(
        base,
        name=f"kill-{kv.name}",
        env=(*kv.env, ("BENCH_SPOOL_DIR", str(spool))),
        celery_worker=kv.celery,
    )
    dbs.fresh(BACKEND, db, SETTINGS.format(variant.settings))
    print(f"-- kill: {kv.name}", flush=True)
    killed = []
    srv = Server(variant, BACKEND, db, _free_port())
    try:
        with srv:
            started = time.monotonic()
            with Client(srv.port, kv.name, kv.path) as client:
                time.sleep(before)
                victim = _gunicorn_workers(srv)[0]
                os.kill(victim, signal.SIGKILL)
                killed.append(f"gunicorn worker {victim}")
                if kv.celery and srv.worker is not None:
                    if dict(kv.env).get("BENCH_DIE_ON_RECEIPT"):
                        RECEIPT_TRIGGER.touch()
                        srv.worker.wait(30)
                        RECEIPT_TRIGGER.unlink()
                        how = f"signal {-srv.worker.returncode} as it took a message"
                    else:
                        how = "busy" if _kill_group(srv.worker) else "idle"
                    killed.append(f"Celery worker {srv.worker.pid} ({how})")
                    time.sleep(1.0)
                    srv.worker = _start_celery_worker(srv.env())
                time.sleep(after)
            loaded = time.monotonic() - started
            acked = dict(client.acked)
            stopped = time.monotonic()
            while True:
                stored = _stored(db, kv.path)
                lost = [m for m in acked if m not in stored]
                if not lost or time.monotonic() - stopped > wait:
                    break
                time.sleep(1.0)
            waited = time.monotonic() - stopped
        # What the web processes flushed on their graceful stop reaches the Celery worker.
        _settle(BACKEND, db, "tracking_activity", stable=3.0, timeout=30)
        after_stop = _stored(db, kv.path)
    finally:
        srv.stop_worker()
    lost_after_stop = sum(1 for m in acked if m not in after_stop)
    by_victim = sum(1 for m in lost if acked[m] == str(victim))
    served_by_victim = sum(1 for pid in acked.values() if pid == str(victim))
    dups = sum(1 for n in stored.values() if n > 1)
    extra = sum(1 for m in stored if m not in acked)
    vt = dict(variant.env).get("BENCH_VISIBILITY_TIMEOUT", "0")
    broker = ""
    if kv.name.startswith("celery-redis"):
        broker = f"; Redis visibility timeout {vt + ' s' if float(vt) else 'kombu default (1 h)'}"
    report.add(
        Figure(
            "kill",
            f"{kv.name}: acknowledged events lost",
            len(lost),
            "events",
            len(acked),
            "acknowledged",
            "0 lost",
            not lost,
            note=f"{by_victim} of them (of {served_by_victim} acknowledged) served by the killed "
            "gunicorn worker; "
            f"after {waited:.0f} s of waiting (server running); {lost_after_stop} still "
            f"missing after a graceful stop; killed {', '.join(killed)} mid-load; "
            f"{len(acked) / loaded:,.0f} acknowledged req/s, {client.failed} requests failed, "
            f"{extra} stored without acknowledgement (in flight){broker}",
        )
    )
    report.add(
        Figure(
            "kill",
            f"{kv.name}: events stored more than once",
            dups,
            "events",
            target="0 duplicates",
            ok=dups == 0,
        )
    )


def run(report: Report, *, variants: str | None = None, quick: bool = False) -> None:
    from .overhead import _broker_reachable

    names = (variants or ",".join(KILL_VARIANTS)).split(",")
    unknown = [n for n in names if n not in KILL_VARIANTS]
    if unknown:
        raise ValueError(f"unknown kill variants {unknown}; known: {', '.join(KILL_VARIANTS)}")
    wait = float(os.environ.get("BENCH_KILL_WAIT") or (30 if quick else 120))
    for name in names:
        kv = KILL_VARIANTS[name]
        if kv.celery:
            broker = dict(kv.env)["BENCH_BROKER_URL"]
            if broker.startswith("redis") and not _broker_reachable():
                print(f"  no Redis at {broker}: {name} skipped")
                continue
            if broker.startswith("amqp") and not _amqp_reachable(broker):
                print(f"  no RabbitMQ at {broker}: {name} skipped")
                continue
        vt = float(dict(kv.env).get("BENCH_VISIBILITY_TIMEOUT", "0"))
        measure(
            report,
            kv,
            before=2.0 if quick else 4.0,
            after=2.0 if quick else 4.0,
            wait=max(wait, vt + 60) if 0 < vt <= 600 else wait,
        )


def _amqp_reachable(url: str) -> bool:
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1)
        return True
    except Exception:  # any failure means "no broker"
        return False
