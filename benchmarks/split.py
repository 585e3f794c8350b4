"""Split-machine request overhead: the web tier alone on one core (issue #20, point 4).

``run.py --only requests --split``. gunicorn (master and both sync workers) is pinned to the
web core (``BENCH_WEB_CPUS``, default 0); wrk, the Celery worker, PostgreSQL, Redis and
RabbitMQ to the other (``BENCH_OTHER_CPUS``, default 1) — see ``benchmarks/pin.py``. The
untracked server is pinned the same way, so the ratio tracked ÷ untracked is the web tier's
own cost, as it would be with the database and workers on other machines. Each variant is
measured right after the untracked baseline (A/B), as in ``overhead.py``; PostgreSQL only.

Printed per variant and view kind: saturated req/s (8 connections) against untracked, the
added p50 at the moderate constant load (2 connections, 5 ms apart), the web core's CPU per
request (user + system time of the gunicorn processes during the saturated run; on a core
shared with other jobs, req/s drops but CPU time per request barely moves, so untracked ÷
tracked CPU is the steadier estimate of the web tier's ratio), and rows stored ÷ requests
served once the background writers (and the Celery worker) drained.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import dataclass

from . import dbs, pin
from .overhead import (
    PACED_CONNECTIONS,
    PACED_DELAY_MS,
    SETTINGS,
    VARIANTS,
    Load,
    Server,
    _broker_reachable,
    _free_port,
    _lua_script,
    _settle,
    wrk,
)
from .report import Figure, Report

ORDER = [
    "track-sync",
    "track-sync-celery",
    "track-async",
    "track-celery",
    "easy-audit",
    "drf-api-logger",
]
CELERY_TARGET = 0.85  # issue #20: web tier >= 0.85 of untracked with the Celery hand-off
ADDED_P50_TARGET = 0.1  # ms, at the moderate constant load
BACKEND = "postgresql"


def _cpu_seconds(root: int) -> float:
    """User + system CPU time of ``root`` and its live descendants (the gunicorn tree)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pin.tree([root]):
        try:
            text = open(f"/proc/{pid}/stat").read()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def _core_ticks() -> dict[int, tuple[int, int]]:
    """Per core: (busy, total) clock ticks since boot, from /proc/stat (idle and iowait are
    not busy)."""
    out: dict[int, tuple[int, int]] = {}
    with open("/proc/stat") as fh:
        for line in fh:
            name, *fields = line.split()
            if not name.startswith("cpu") or name == "cpu":
                continue
            ticks = [int(f) for f in fields[:8]]
            out[int(name[3:])] = (sum(ticks) - ticks[3] - ticks[4], sum(ticks))
    return out


def _busy(before: dict, after: dict, cores: set[int]) -> float:
    """Share of ``cores``' time spent busy between the two readings (0..1)."""
    busy = sum(after[c][0] - before[c][0] for c in cores if c in before and c in after)
    total = sum(after[c][1] - before[c][1] for c in cores if c in before and c in after)
    return busy / total if total else float("nan")


@dataclass
class Measured:
    paced: Load
    sat: Load
    cpu_ms: float  # the web tier's CPU per request, saturated
    web_busy: float  # share of the web core(s) busy during the saturated run
    other_busy: float  # share of the other core(s): wrk, workers, PostgreSQL, brokers


def _measure(srv: Server, path: str, *, seconds: float, script, paced) -> Measured:
    assert srv.proc is not None
    paced_load = wrk(
        path, connections=PACED_CONNECTIONS, seconds=seconds, script=paced, port=srv.port
    )
    before, ticks = _cpu_seconds(srv.proc.pid), _core_ticks()
    sat = wrk(path, connections=8, seconds=seconds, script=script, port=srv.port)
    cpu, after = _cpu_seconds(srv.proc.pid) - before, _core_ticks()
    return Measured(
        paced_load,
        sat,
        1000 * cpu / max(sat.requests, 1),
        _busy(ticks, after, pin.web_cpus()),
        _busy(ticks, after, pin.other_cpus()),
    )


def _start(srv: Server) -> Server:
    srv.__enter__()
    assert srv.proc is not None
    pin.pin_tree(srv.proc.pid, pin.web_cpus())
    return srv


def run(report: Report, *, seconds: float) -> None:
    if not shutil.which("wrk"):
        print("  wrk not installed (apt-get install wrk): split-machine requests skipped")
        return
    why = pin.available()
    if why:
        print(f"  split-machine mode not possible here: {why}")
        return
    if not dbs.pg_available():
        print("  PostgreSQL not reachable at BENCH_PG_URL: split-machine requests skipped")
        return
    from tracking.simulator.geoip import build_databases

    build_databases(dbs.VAR / "geoip")
    script, paced = _lua_script(), _lua_script(PACED_DELAY_MS)
    order = list(ORDER)
    if os.environ.get("BENCH_VARIANTS"):
        order = [n for n in order if n in os.environ["BENCH_VARIANTS"].split(",")]
    if not _broker_reachable():
        for name in ("track-sync-celery", "track-celery"):
            if name in order:
                print(f"  no Celery broker at BENCH_BROKER_URL: {name} skipped")
                order.remove(name)
    for name, module in (("easy-audit", "easyaudit"), ("drf-api-logger", "drf_api_logger")):
        if name in order and importlib.util.find_spec(module) is None:
            print(f"  {module} not installed (pip install -e '.[bench]'): {name} skipped")
            order.remove(name)
    results: dict[tuple[str, str], tuple] = {}
    stored: dict[str, tuple[int, int]] = {}
    base_variant = VARIANTS["untracked"]
    with pin.split() as pinned:
        print("  " + pin.describe(pinned), flush=True)
        dbs.fresh(BACKEND, "split_untracked", SETTINGS.format(base_variant.settings))
        base = _start(Server(base_variant, BACKEND, "split_untracked", _free_port()))
        try:
            for name in order:
                variant = VARIANTS[name]
                db = f"split_{variant.settings}"
                dbs.fresh(BACKEND, db, SETTINGS.format(variant.settings))
                print(f"-- split {BACKEND}: {name} (A/B against untracked)", flush=True)
                served = 0

                def drain(variant=variant, db=db) -> None:
                    if variant.table:
                        _settle(BACKEND, db, variant.table, stable=variant.settle)

                srv = _start(Server(variant, BACKEND, db, _free_port()))
                try:
                    for kind, path in variant.paths.items():
                        bpath = base_variant.paths[kind]
                        wrk(bpath, connections=2, seconds=1, script=script, port=base.port)
                        served += wrk(
                            path, connections=2, seconds=1, script=script, port=srv.port
                        ).requests  # warm-up
                        drain()
                        b = _measure(base, bpath, seconds=seconds, script=script, paced=paced)
                        v = _measure(srv, path, seconds=seconds, script=script, paced=paced)
                        drain()
                        served += v.paced.requests + v.sat.requests
                        results[(name, kind)] = (v, b)
                finally:
                    srv.__exit__(None, None, None)
                try:
                    if variant.table:
                        rows = _settle(BACKEND, db, variant.table, stable=variant.settle)
                        stored[name] = (rows, served)
                finally:
                    srv.stop_worker()
        finally:
            base.__exit__(None, None, None)
    _report(report, results, stored)


# Below this share of busy time on the web core while the other core is saturated, the
# saturated req/s measures the other core (wrk starved beside the Celery worker and
# PostgreSQL), not the web tier: the CPU-per-request ratio is then the web tier's figure.
SATURATED = 0.97


def _cores_note(v: Measured, b: Measured) -> str:
    note = (
        f"web core busy {v.web_busy:.0%} (untracked {b.web_busy:.0%}), other core "
        f"{v.other_busy:.0%} (untracked {b.other_busy:.0%})"
    )
    if v.other_busy >= SATURATED and v.web_busy < SATURATED:
        note += (
            ": the other core was the bottleneck (wrk shares it with the worker and "
            "PostgreSQL), so this ratio understates the web tier; see CPU per request"
        )
    return note


def _report(report: Report, results: dict, stored: dict) -> None:
    for kind in ("django", "drf"):
        ratios = {name: v.sat.rps / b.sat.rps for (name, k), (v, b) in results.items() if k == kind}
        for name in ORDER:
            if (name, kind) not in results:
                continue
            v, b = results[(name, kind)]
            v_paced, v_sat, v_cpu = v.paced, v.sat, v.cpu_ms
            b_paced, b_sat, b_cpu = b.paced, b.sat, b.cpu_ms
            target, ok = "", None
            if name == "track-celery":
                target = f"web tier >= {CELERY_TARGET} of untracked"
                ok = ratios[name] >= CELERY_TARGET
            elif name in ("track-sync", "track-sync-celery") and "easy-audit" in ratios:
                target = f"sync >= easy-audit's {ratios['easy-audit']:.3f} (same run)"
                ok = ratios[name] >= ratios["easy-audit"]
            errors = v_sat.errors + v_paced.errors
            report.add(
                Figure(
                    "split",
                    f"web core {kind} {name} saturated (8 conn)",
                    v_sat.rps,
                    "req/s",
                    b_sat.rps,
                    "untracked",
                    target,
                    ok,
                    note=_cores_note(v, b) + (f"; {errors} errors" if errors else ""),
                )
            )
            report.add(
                Figure(
                    "split",
                    f"web core {kind} {name} CPU per request (saturated)",
                    v_cpu,
                    "ms",
                    b_cpu,
                    "untracked",
                    note=f"untracked ÷ tracked CPU = {b_cpu / v_cpu if v_cpu else float('nan'):.3f}: "
                    "the throughput ratio a web core busy with nothing else would give "
                    "(CPU time is not inflated by other processes on the core, req/s is)",
                )
            )
            added = v_paced.p50_ms - b_paced.p50_ms
            is_celery = name == "track-celery"
            report.add(
                Figure(
                    "split",
                    f"web core {kind} {name} added p50 (moderate load)",
                    added,
                    "ms",
                    target=f"<= {ADDED_P50_TARGET} ms" if is_celery else "",
                    ok=added <= ADDED_P50_TARGET if is_celery else None,
                    note=f"p50 {v_paced.p50_ms:.3f} vs {b_paced.p50_ms:.3f} ms, p99 "
                    f"{v_paced.p99_ms:.3f} vs {b_paced.p99_ms:.3f} ms at {v_paced.rps:,.0f} vs "
                    f"{b_paced.rps:,.0f} req/s ({PACED_CONNECTIONS} conn, {PACED_DELAY_MS} ms apart)",
                )
            )
    for name, (rows, served) in stored.items():
        report.add(
            Figure(
                "split",
                f"{name} rows stored / requests completed",
                rows,
                "rows",
                served,
                "completed",
                target="every request stored" if name.startswith("track") else "",
                ok=rows >= served if name.startswith("track") else None,
                note="wrk stops mid-request: stored may exceed completed",
            )
        )
