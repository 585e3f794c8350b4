"""CPU pinning for the split-machine mode: the web tier on one core, everything else on the other.

``split()`` pins this process (and so every child it starts afterwards: wrk, the Celery
worker, the load client) and the running services (PostgreSQL's postmaster and backends, Redis,
RabbitMQ) to the "other" cores; ``pin_tree(gunicorn_pid, web)`` then moves a gunicorn master
and its workers to the web core (workers it respawns inherit the master's affinity, and so do
new PostgreSQL backends, forked by the postmaster). Every thread of a process is pinned, as
``taskset -a -p`` does. The previous affinities are restored on the way out, also on an error,
Ctrl-C or SIGTERM.

The cores come from ``BENCH_WEB_CPUS`` (default ``0``) and ``BENCH_OTHER_CPUS`` (default
``1``), comma-separated.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Processes pinned to the "other" cores with their children, by command name.
SERVICES = ("postgres", "redis-server", "beam.smp")


def cpus(var: str, default: str) -> set[int]:
    return {int(c) for c in (os.environ.get(var) or default).split(",") if c.strip()}


def web_cpus() -> set[int]:
    return cpus("BENCH_WEB_CPUS", "0")


def other_cpus() -> set[int]:
    return cpus("BENCH_OTHER_CPUS", "1")


def available() -> str:
    """Why the split mode cannot run here ("" when it can)."""
    if not hasattr(os, "sched_setaffinity"):
        return "no sched_setaffinity on this system"
    have = os.sched_getaffinity(0)
    web, other = web_cpus(), other_cpus()
    if web & other:
        return f"BENCH_WEB_CPUS {sorted(web)} and BENCH_OTHER_CPUS {sorted(other)} overlap"
    if not (web | other) <= have:
        return f"cores {sorted(web | other)} wanted, this process may use {sorted(have)}"
    return ""


def _stat(pid: int) -> tuple[str, int] | None:
    """(command name, parent pid) of ``pid`` from /proc, None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name = text[text.index("(") + 1 : text.rindex(")")]
    return name, int(text[text.rindex(")") + 2 :].split()[1])


def _processes() -> dict[int, tuple[str, int]]:
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st:
                found[int(entry)] = st
    return found


def tree(roots: list[int]) -> list[int]:
    """``roots`` and all their descendants."""
    procs = _processes()
    children: dict[int, list[int]] = {}
    for pid, (_name, ppid) in procs.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = [], list(roots)
    while todo:
        pid = todo.pop()
        if pid in out:
            continue
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def service_roots(names: tuple[str, ...] = SERVICES) -> list[int]:
    """Top processes of the services: e.g. the postmaster, not its backends."""
    procs = _processes()
    return [
        pid
        for pid, (name, ppid) in procs.items()
        if name in names and procs.get(ppid, ("", 0))[0] != name
    ]


def _set(pid: int, cores: set[int]) -> bool:
    """Pin every thread of ``pid``; False when it is gone or refuses."""
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return False
    ok = False
    for tid in tids:
        try:
            os.sched_setaffinity(tid, cores)
            ok = True
        except OSError:  # the thread ended, or not ours to pin
            pass
    return ok


def pin_tree(root: int, cores: set[int]) -> list[int]:
    """Pin ``root`` and its descendants to ``cores``; returns the pids pinned."""
    return [pid for pid in tree([root]) if _set(pid, cores)]


def affinity(pid: int) -> set[int] | None:
    try:
        return os.sched_getaffinity(pid)
    except OSError:
        return None


def _terminate_as_interrupt(signum, frame):  # pragma: no cover - signal path
    raise KeyboardInterrupt(f"signal {signum}")


@contextmanager
def split(roots: list[int] | None = None) -> Iterator[dict[str, list[int]]]:
    """This process and the services (``roots`` and their descendants, by default the
    running ``SERVICES``) on the other cores for the duration; restored after."""
    other = other_cpus()
    roots = service_roots() if roots is None else roots
    saved: dict[int, set[int]] = {}
    for root in roots:
        for pid in tree([root]):
            aff = affinity(pid)
            if aff is not None:
                saved[pid] = aff
    me = os.getpid()
    saved_me = os.sched_getaffinity(0)
    previous = signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    pinned: dict[str, list[int]] = {}
    try:
        _set(me, other)
        for root in roots:
            name = (_stat(root) or ("?", 0))[0]
            pinned.setdefault(name, []).extend(pin_tree(root, other))
        yield pinned
    finally:
        # New children (PostgreSQL backends forked meanwhile) go back to their root's mask.
        for root in roots:
            for pid in tree([root]):
                mask = saved.get(pid) or saved.get(root)
                if mask:
                    _set(pid, mask)
        _set(me, saved_me)
        signal.signal(signal.SIGTERM, previous)


def describe(pinned: dict[str, list[int]]) -> str:
    parts = [f"{name} x{len(pids)}" for name, pids in sorted(pinned.items())]
    return (
        f"web tier on cores {sorted(web_cpus())}; this process, wrk, workers and services "
        f"({', '.join(parts) or 'none found'}) on cores {sorted(other_cpus())}"
    )
