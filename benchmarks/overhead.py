"""Request overhead: gunicorn (2 sync workers) under wrk on loopback, per variant and backend.

Variants: the untracked baseline (its own server, measured right before each variant),
``@track`` (synchronous write), ``@track(async_log=True)`` (in-process writer), and the
alternatives a user would install instead: django-easy-audit request logging and
DRF-API-Logger with its background writer. Every figure is a ratio to the baseline of the same
backend and view kind, measured in the same run.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path

from . import dbs
from .report import Figure, Report


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PORT = int(os.environ.get("BENCH_PORT") or _free_port())
SETTINGS = "benchmarks.project.settings_{}"


@dataclass(frozen=True)
class Variant:
    name: str
    settings: str
    paths: dict[str, str]  # view kind -> URL path
    table: str = ""  # where it logs (rows counted to prove it logged)
    settle: float = 1.0  # seconds without new rows before its background writer counts as drained
    env: tuple[tuple[str, str], ...] = ()  # extra environment of its server (and worker)
    celery_worker: bool = False  # run one Celery worker process beside the server
    backends: tuple[str, ...] = ("sqlite", "postgresql")


VARIANTS = {
    "untracked": Variant("untracked", "untracked", {"django": "/plain/", "drf": "/drf/"}),
    "track-sync": Variant(
        "track-sync",
        "tracking",
        {"django": "/plain-sync/", "drf": "/drf-sync/"},
        "tracking_activity",
    ),
    "track-async": Variant(
        "track-async",
        "tracking",
        {"django": "/plain-async/", "drf": "/drf-async/"},
        "tracking_activity",
    ),
    # async_log=True with TRACKING_ASYNC_HANDOFF = "celery": the web process's writer thread
    # only publishes batches; one Celery worker process on this machine ingests them.
    "track-celery": Variant(
        "track-celery",
        "tracking",
        {"django": "/plain-async/", "drf": "/drf-async/"},
        "tracking_activity",
        settle=3.0,
        env=(("BENCH_HANDOFF", "celery"),),
        celery_worker=True,
    ),
    # Synchronous @track with TRACKING_ASYNC_HANDOFF = "celery": the request commits its intake
    # row; the web process's writer thread publishes the intake events and the Celery worker
    # runs their batch step (benchmarks/split.py: the web tier's own cost).
    "track-sync-celery": Variant(
        "track-sync-celery",
        "tracking",
        {"django": "/plain-sync/", "drf": "/drf-sync/"},
        "tracking_activity",
        settle=3.0,
        env=(("BENCH_HANDOFF", "celery"),),
        celery_worker=True,
    ),
    "easy-audit": Variant(
        "easy-audit", "easyaudit", {"django": "/plain/", "drf": "/drf/"}, "easyaudit_requestevent"
    ),
    "drf-api-logger": Variant(
        "drf-api-logger",
        "drfapilogger",
        {"django": "/plain/", "drf": "/drf/"},
        "drf_api_logs",
        settle=12.0,  # its writer flushes every DRF_LOGGER_INTERVAL (10 s by default)
    ),
}


def _prepared(base: Variant) -> Variant:
    """``base`` with the database settings docs/performance.md ("PostgreSQL: prepared statements")
    recommends without a transaction-mode pooler: Django's server-side binding and psycopg's
    prepared statements (``BENCH_PG_PREPARED``, read by settings_base). The untracked
    baseline runs no SQL, so its settings do not matter."""
    return replace(
        base,
        name=f"{base.name}-prepared",
        env=(*base.env, ("BENCH_PG_PREPARED", "1")),
        backends=("postgresql",),
    )


for _name in ("track-sync", "track-async"):
    VARIANTS[f"{_name}-prepared"] = _prepared(VARIANTS[_name])


@dataclass
class Load:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int


# "Moderate constant load" for the latency target: wrk connections that each wait this long
# between a response and their next request (wrk's ``delay()``; its latency clock starts when
# a request is written, so the wait is not counted). 2 connections x 5 ms is ~350 req/s, a
# fifth or less of what the untracked server does at saturation here.
PACED_CONNECTIONS = 2
PACED_DELAY_MS = 5


def _lua_script(delay_ms: int = 0) -> Path:
    """wrk script: each request comes from another world address and browser, so enrichment
    and detection do real work instead of hitting one cached entry. ``delay_ms`` paces each
    connection (see ``PACED_DELAY_MS``)."""
    from .workload import BROWSERS, client_addresses

    ips, uas = client_addresses(), BROWSERS
    path = dbs.VAR / (f"wrk-paced-{delay_ms}ms.lua" if delay_ms else "wrk.lua")
    path.parent.mkdir(parents=True, exist_ok=True)
    lua_ips = ",".join(f'"{ip}"' for ip in ips)
    lua_uas = ",".join(f'"{ua}"' for ua in uas)
    path.write_text(
        f"local ips = {{{lua_ips}}}\nlocal uas = {{{lua_uas}}}\nlocal i = 0\n"
        "request = function()\n  i = i + 1\n"
        '  local h = {["X-Forwarded-For"] = ips[(i % #ips) + 1], '
        '["User-Agent"] = uas[(i % #uas) + 1]}\n'
        '  return wrk.format("GET", nil, h)\nend\n'
        + (f"delay = function()\n  return {int(delay_ms)}\nend\n" if delay_ms else "")
    )
    return path


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _ms(text: str) -> float:
    """wrk's time (``812.00us``, ``1.20ms``, ``2.01s``, ``1.05m``) in milliseconds."""
    m = re.match(r"([\d.]+)(us|ms|s|m|h)$", text)
    return float(m.group(1)) * _UNITS[m.group(2)] if m else float("nan")


def wrk(path: str, *, connections: int, seconds: float, script: Path, port: int = 0) -> Load:
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--latency",
            "-s",
            str(script),
            f"http://127.0.0.1:{port or PORT}{path}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    # Lines of the latency distribution only: "96.50%" ends the thread-stats line too.
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    errors = 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errors += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(x) for x in m.groups())
    return Load(rps, p50, p99, requests, errors)


class Server:
    """gunicorn with 2 sync workers for one variant and database."""

    def __init__(self, variant: Variant, backend: str, db: str, port: int = 0) -> None:
        self.variant, self.backend, self.db = variant, backend, db
        self.port = port or PORT
        self.proc: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None
        self.queue = f"bench-overhead-{os.getpid()}"

    def env(self) -> dict[str, str]:
        env = dbs.env_for(self.backend, self.db, SETTINGS.format(self.variant.settings))
        env.update(dict(self.variant.env), BENCH_CELERY_QUEUE=self.queue)
        return env

    def stop_worker(self) -> None:
        """After the rows settled: the worker has drained the queue."""
        if self.worker is not None and self.worker.poll() is None:
            self.worker.terminate()
            try:
                self.worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.worker.kill()
                self.worker.wait()
        self.worker = None

    def __enter__(self) -> Server:
        env = self.env()
        if self.variant.celery_worker:
            self.worker = _start_celery_worker(env)
        self.proc = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "gunicorn"),
                "-w",
                "2",
                "-k",
                "sync",
                "-b",
                f"127.0.0.1:{self.port}",
                "--log-level",
                "warning",
                "benchmarks.project.wsgi:application",
            ],
            env=env,
            cwd=dbs.ROOT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/plain/", timeout=2):
                    return self
            except OSError:
                time.sleep(0.2)
        self.__exit__(None, None, None)
        raise RuntimeError(f"gunicorn for {self.variant.name} did not start")

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # graceful: workers flush their writers
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # A Celery worker keeps running: the caller stops it (stop_worker) once every batch
        # the web processes published is stored.


def _broker_reachable() -> bool:
    import redis

    try:
        url = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/14")
        return bool(redis.Redis.from_url(url, socket_connect_timeout=2).ping())
    except Exception:  # any failure means "no broker"
        return False


def _start_celery_worker(env: dict[str, str]) -> subprocess.Popen:
    """One Celery worker process (solo pool) on the server's database and queue."""
    from celery import Celery

    from .ingestion import WORKER

    name = f"bench-overhead-{os.getpid()}@localhost"
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER],
        env=env | {"BENCH_QUEUE": env["BENCH_CELERY_QUEUE"], "BENCH_NAME": name},
        cwd=dbs.ROOT,
        start_new_session=True,
        stdout=subprocess.DEVNULL,  # its banner; warnings and errors still go to stderr
    )
    app = Celery("bench-overhead-client")
    app.conf.update(
        broker_url=env.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/14"),
        broker_connection_retry_on_startup=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if app.control.ping(destination=[name], timeout=0.5):
            return worker
    worker.terminate()
    raise RuntimeError("celery worker did not start")


def _settle(
    backend: str, db: str, table: str, *, stable: float = 1.0, timeout: float = 40.0
) -> int:
    """Row count once it stops growing (the background writers have drained)."""
    last, stable_since = -1, time.monotonic()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = dbs.count(backend, db, table)
        if n != last:
            last, stable_since = n, time.monotonic()
        elif time.monotonic() - stable_since > stable:
            break
        time.sleep(0.25)
    return last


def run(report: Report, *, backends: list[str], seconds: float, quick: bool) -> None:
    """The untracked baseline server runs the whole time on its own port; each measurement of
    a variant is taken right after the same measurement of the baseline (A/B, adjacent in
    time), so a busy machine's drift hits both sides of every ratio alike."""
    if not shutil.which("wrk"):
        print("  wrk not installed (apt-get install wrk): request overhead skipped")
        return
    from tracking.simulator.geoip import build_databases

    build_databases(dbs.VAR / "geoip")
    script = _lua_script()
    paced = _lua_script(PACED_DELAY_MS)
    order = [
        "track-sync",
        "track-sync-prepared",
        "track-async",
        "track-async-prepared",
        "track-celery",
        "easy-audit",
        "drf-api-logger",
    ]
    if os.environ.get("BENCH_VARIANTS"):  # e.g. "track-async,track-celery" for a quick look
        wanted = os.environ["BENCH_VARIANTS"].split(",")
        order = [name for name in order if name in wanted]
    if "track-celery" in order and not _broker_reachable():
        print("  no Celery broker at BENCH_BROKER_URL: track-celery skipped")
        order.remove("track-celery")
    for name, module in (("easy-audit", "easyaudit"), ("drf-api-logger", "drf_api_logger")):
        if importlib.util.find_spec(module) is None:
            print(f"  {module} not installed (pip install -e '.[bench]'): {name} skipped")
            order.remove(name)
    base_variant = VARIANTS["untracked"]
    for backend in backends:
        results: dict[tuple[str, str], tuple[Load, Load, Load, Load]] = {}
        stored: dict[str, tuple[int, int]] = {}
        base_db = "overhead_untracked"
        dbs.fresh(backend, base_db, SETTINGS.format(base_variant.settings))
        with Server(base_variant, backend, base_db, _free_port()) as base:
            for name in order:
                variant = VARIANTS[name]
                if backend not in variant.backends:
                    continue
                db = f"overhead_{variant.settings}"
                dbs.fresh(backend, db, SETTINGS.format(variant.settings))
                print(f"-- {backend}: {name} (A/B against untracked)", flush=True)
                served = 0

                def drain(variant=variant, db=db, backend=backend) -> None:
                    if variant.table:
                        _settle(backend, db, variant.table, stable=variant.settle)

                with Server(variant, backend, db, _free_port()) as srv:
                    for kind, path in variant.paths.items():
                        bpath = base_variant.paths[kind]
                        wrk(bpath, connections=2, seconds=1, script=script, port=base.port)
                        served += wrk(
                            path, connections=2, seconds=1, script=script, port=srv.port
                        ).requests  # warm-up
                        drain()
                        b_paced = wrk(
                            bpath,
                            connections=PACED_CONNECTIONS,
                            seconds=seconds,
                            script=paced,
                            port=base.port,
                        )
                        v_paced = wrk(
                            path,
                            connections=PACED_CONNECTIONS,
                            seconds=seconds,
                            script=paced,
                            port=srv.port,
                        )
                        drain()
                        b_mod = wrk(
                            bpath, connections=1, seconds=seconds, script=script, port=base.port
                        )
                        v_mod = wrk(
                            path, connections=1, seconds=seconds, script=script, port=srv.port
                        )
                        drain()
                        b_sat = wrk(
                            bpath, connections=8, seconds=seconds, script=script, port=base.port
                        )
                        v_sat = wrk(
                            path, connections=8, seconds=seconds, script=script, port=srv.port
                        )
                        drain()
                        served += v_paced.requests + v_mod.requests + v_sat.requests
                        results[(name, kind)] = (v_mod, v_sat, b_mod, b_sat, v_paced, b_paced)
                try:
                    if variant.table:
                        stored[name] = (
                            _settle(backend, db, variant.table, stable=variant.settle),
                            served,
                        )
                finally:
                    srv.stop_worker()
        _report(report, backend, results, stored)


def _targets(kind: str, backend: str, results) -> dict[str, tuple[float, str]]:
    """Issue #20's whole-machine targets, against the peers' ratios of the same run: sync
    (PostgreSQL) >= django-easy-audit's, async ahead of every peer."""
    ratio = {n: r[1].rps / r[3].rps for (n, k), r in results.items() if k == kind}
    # DRF-API-Logger logs DRF views only: on the plain Django view it records nothing, so it
    # is no peer there (its ratio is the untracked server's).
    names = ("easy-audit", "drf-api-logger") if kind == "drf" else ("easy-audit",)
    peers = {n: ratio[n] for n in names if n in ratio}
    out = {}
    if peers:
        best = max(peers.values())
        for name in ("track-async", "track-async-prepared", "track-celery"):
            out[name] = (best, f"async > every peer ({best:.3f})")
    if "easy-audit" in peers and backend == "postgresql":
        for name in ("track-sync", "track-sync-prepared"):
            out[name] = (peers["easy-audit"], f"sync >= easy-audit ({peers['easy-audit']:.3f})")
    return out


def _report(report, backend, results, stored) -> None:
    for kind in ("django", "drf"):
        targets = _targets(kind, backend, results)
        for name in VARIANTS:
            if (name, kind) not in results:
                continue
            moderate, saturated, b_mod, b_sat, v_paced, b_paced = results[(name, kind)]
            target, text = targets.get(name, (None, ""))
            errors = moderate.errors + saturated.errors
            report.add(
                Figure(
                    "requests",
                    f"{backend} {kind} {name} saturated (8 conn)",
                    saturated.rps,
                    "req/s",
                    b_sat.rps,
                    "untracked",
                    text,
                    None if target is None else saturated.rps / b_sat.rps >= target,
                    note=f"{errors} errors" if errors else "",
                )
            )
            ok = None
            is_async = name in ("track-async", "track-async-prepared", "track-celery")
            if is_async:
                ok = v_paced.p50_ms - b_paced.p50_ms <= 0.1
            report.add(
                Figure(
                    "requests",
                    f"{backend} {kind} {name} added p50 (moderate constant load)",
                    v_paced.p50_ms - b_paced.p50_ms,
                    "ms",
                    None,
                    "",
                    "async <= 0.1 ms" if is_async else "",
                    ok,
                    note=f"p50 {v_paced.p50_ms:.3f} vs {b_paced.p50_ms:.3f} ms, p99 "
                    f"{v_paced.p99_ms:.3f} vs {b_paced.p99_ms:.3f} ms at {v_paced.rps:,.0f} vs "
                    f"{b_paced.rps:,.0f} req/s ({PACED_CONNECTIONS} conn, {PACED_DELAY_MS} ms "
                    "between requests)",
                )
            )
            report.add(
                Figure(
                    "requests",
                    f"{backend} {kind} {name} added p50 (1 conn, closed loop)",
                    moderate.p50_ms - b_mod.p50_ms,
                    "ms",
                    note=f"p50 {moderate.p50_ms:.3f} vs {b_mod.p50_ms:.3f} ms; one connection "
                    "sending back to back keeps a worker busy: not a moderate load",
                )
            )
            report.add(
                Figure(
                    "requests",
                    f"{backend} {kind} {name} added p99 (1 conn, closed loop)",
                    moderate.p99_ms - b_mod.p99_ms,
                    "ms",
                    note=f"p99 {moderate.p99_ms:.3f} vs {b_mod.p99_ms:.3f} ms",
                )
            )
    for name, (rows, served) in stored.items():
        report.add(
            Figure(
                "requests",
                f"{backend} {name} rows stored / requests completed",
                rows,
                "rows",
                served,
                "completed",
                note="wrk stops mid-request: stored may exceed completed",
            )
        )
