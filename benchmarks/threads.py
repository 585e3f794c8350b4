"""Where a saturated server's CPU goes, per request, by thread (issue #20, point 1).

``run.py --only threads``, PostgreSQL. For untracked, synchronous ``@track``,
``async_log=True`` and django-easy-audit (``BENCH_VARIANTS`` picks), one gunicorn server
(2 sync workers) on a fresh database, 8 wrk connections on the Django view for the
measurement time; CPU time (user + system, /proc) over the run, divided by the requests
served:

- the gunicorn workers' request threads (each worker's main thread);
- their other threads (the tracking writer: the synchronous path's batch step, or the async
  path's batches);
- every PostgreSQL process on this machine (the server's backends, WAL writer, checkpointer).

The request-thread figure compares the one ``INSERT`` a synchronous request commits before its
response with django-easy-audit's one ``INSERT``; the writer's and PostgreSQL's show what the
batch step adds on the same cores. Nothing else should run meanwhile.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from . import dbs
from .overhead import SETTINGS, VARIANTS, Server, _free_port, _lua_script, wrk
from .report import Figure, Report

ORDER = ["untracked", "track-sync", "track-async", "easy-audit"]
TICK = os.sysconf("SC_CLK_TCK")


def _cpu(path: Path) -> float:
    try:
        fields = path.read_text().rsplit(")", 1)[1].split()
    except OSError:  # gone meanwhile
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                text = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(text.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def _postgres() -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                name = Path(f"/proc/{entry}/comm").read_text().strip()
            except OSError:
                continue
            if name.startswith("postgres"):
                pids.append(int(entry))
    return pids


def snapshot(workers: list[int]) -> tuple[float, float, float]:
    """(request threads, other threads, PostgreSQL) CPU seconds so far."""
    main = other = 0.0
    for pid in workers:
        for task in Path(f"/proc/{pid}/task").iterdir():
            cpu = _cpu(task / "stat")
            if int(task.name) == pid:
                main += cpu
            else:
                other += cpu
    pg = sum(_cpu(Path(f"/proc/{pid}/stat")) for pid in _postgres())
    return main, other, pg


def run(report: Report, *, seconds: float) -> None:
    if not shutil.which("wrk") or not dbs.pg_available():
        print("  wrk or PostgreSQL missing: thread CPU skipped")
        return
    from tracking.simulator.geoip import build_databases

    build_databases(dbs.VAR / "geoip")
    script = _lua_script()
    order = ORDER
    if os.environ.get("BENCH_VARIANTS"):
        wanted = os.environ["BENCH_VARIANTS"].split(",")
        order = [name for name in ORDER if name in wanted or name == "untracked"]
    for name in order:
        variant = VARIANTS[name]
        db = f"threads_{variant.settings}"
        dbs.fresh("postgresql", db, SETTINGS.format(variant.settings))
        with Server(variant, "postgresql", db, _free_port()) as srv:
            path = variant.paths["django"]
            wrk(path, connections=2, seconds=2, script=script, port=srv.port)  # warm
            assert srv.proc is not None
            workers = _children(srv.proc.pid)
            before = snapshot(workers)
            load = wrk(path, connections=8, seconds=seconds, script=script, port=srv.port)
            after = snapshot(workers)
        n = max(load.requests, 1)
        main, other, pg = ((a - b) * 1000 / n for a, b in zip(after, before, strict=True))
        report.add(
            Figure(
                "threads",
                f"postgresql django {name} CPU per request (8 conn)",
                main + other + pg,
                "ms/request",
                note=f"request threads {main:.3f}, writer and other threads {other:.3f}, "
                f"PostgreSQL {pg:.3f} ms; {load.rps:,.0f} req/s, {workers and len(workers)} "
                "workers",
            )
        )
