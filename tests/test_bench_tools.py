"""The benchmark machinery of issue #20 that decides figures: CPU pinning of the split-machine
mode (benchmarks/pin.py) is undone after the run, and the same-run targets compare against
the peers measured in that run (benchmarks/overhead.py, benchmarks/split.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import pytest

from benchmarks import overhead, pin, split, threads, verdict
from benchmarks.overhead import Load
from benchmarks.report import Report

TWO_CORES = hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) >= 2
needs_two_cores = pytest.mark.skipif(not TWO_CORES, reason="pinning needs two usable cores")


@pytest.fixture
def cores(monkeypatch):
    mine = sorted(os.sched_getaffinity(0))
    monkeypatch.setenv("BENCH_WEB_CPUS", str(mine[0]))
    monkeypatch.setenv("BENCH_OTHER_CPUS", str(mine[1]))
    return set(mine), {mine[0]}, {mine[1]}


@pytest.fixture
def service():
    """A stand-in service: a process with a child, like a postmaster and a backend."""
    code = (
        "import subprocess, sys, time; "
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 10
    while len(pin.tree([proc.pid])) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    yield proc
    for pid in reversed(pin.tree([proc.pid])):
        os.kill(pid, 9)
    proc.wait()


@needs_two_cores
def test_split_pins_the_services_and_this_process_then_restores_them(cores, service):
    everything, web, other = cores
    family = pin.tree([service.pid])
    assert len(family) == 2
    with pin.split(roots=[service.pid]) as pinned:
        assert sorted(pid for pids in pinned.values() for pid in pids) == sorted(family)
        assert all(pin.affinity(pid) == other for pid in family)
        assert os.sched_getaffinity(0) == other
        # A process started now (wrk, a Celery worker) inherits the other core ...
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        try:
            assert pin.affinity(child.pid) == other
            # ... and the web tier is moved to its own.
            assert pin.pin_tree(child.pid, web) == [child.pid]
            assert pin.affinity(child.pid) == web
        finally:
            child.kill()
            child.wait()
    assert all(pin.affinity(pid) == everything for pid in family)
    assert os.sched_getaffinity(0) == everything


@needs_two_cores
def test_split_restores_the_affinities_after_an_error(cores, service):
    everything, _web, _other = cores
    with pytest.raises(RuntimeError), pin.split(roots=[service.pid]):
        raise RuntimeError("a benchmark failed")
    assert all(pin.affinity(pid) == everything for pid in pin.tree([service.pid]))
    assert os.sched_getaffinity(0) == everything


def test_split_refuses_overlapping_cores(monkeypatch):
    monkeypatch.setenv("BENCH_WEB_CPUS", "0")
    monkeypatch.setenv("BENCH_OTHER_CPUS", "0,1")
    assert "overlap" in pin.available()


def _load(rps: float, p50: float = 1.0) -> Load:
    return Load(rps=rps, p50_ms=p50, p99_ms=2 * p50, requests=int(rps), errors=0)


def test_whole_machine_targets_are_the_peers_of_the_same_run():
    base = _load(1000)
    results = {
        (name, kind): (base, _load(rps), base, base, base, base)
        for kind in ("django", "drf")
        for name, rps in {
            "track-sync": 300,
            "track-async": 500,
            "easy-audit": 330,
            "drf-api-logger": 450 if kind == "drf" else 950,
        }.items()
    }
    report = Report()
    overhead._report(report, "postgresql", results, {})
    saturated = {f.name: f for f in report.figures if f.name.endswith("saturated (8 conn)")}
    sync = saturated["postgresql django track-sync saturated (8 conn)"]
    assert sync.ok is False and "easy-audit (0.330)" in sync.target
    asynchronous = saturated["postgresql drf track-async saturated (8 conn)"]
    assert asynchronous.ok is True and "every peer (0.450)" in asynchronous.target
    # DRF-API-Logger logs nothing on a plain Django view: no peer there (0.950 = untracked).
    plain = saturated["postgresql django track-async saturated (8 conn)"]
    assert plain.ok is True and "every peer (0.330)" in plain.target


def test_split_report_targets():
    def m(paced, sat, cpu, web=1.0, other=0.8):
        return split.Measured(paced, sat, cpu, web, other)

    base = m(_load(2000, 1.0), _load(2000), 0.30)
    results = {
        ("track-celery", "django"): (m(_load(1800, 1.05), _load(1800), 0.33), base),
        ("track-sync", "django"): (m(_load(1000, 2.0), _load(1000), 0.6, 0.85, 0.99), base),
        ("track-sync-celery", "django"): (m(_load(1300, 1.2), _load(1300), 0.45), base),
        ("easy-audit", "django"): (m(_load(1200, 1.5), _load(1200), 0.5), base),
    }
    report = Report()
    split._report(report, results, {"track-celery": (9_990, 10_000)})
    by_name = {f.name: f for f in report.figures}
    celery = by_name["web core django track-celery saturated (8 conn)"]
    assert celery.ratio == pytest.approx(0.9) and celery.ok is True
    assert "web core busy 100%" in celery.note and "bottleneck" not in celery.note
    assert by_name["web core django track-celery added p50 (moderate load)"].ok is True
    cpu = by_name["web core django track-celery CPU per request (saturated)"]
    assert (cpu.value, cpu.baseline) == (0.33, 0.30) and "= 0.909" in cpu.note
    sync = by_name["web core django track-sync saturated (8 conn)"]
    assert sync.ok is False and "0.600" in sync.target  # easy-audit's ratio of the same run
    # The web core idled while the other one was saturated: the note says the ratio
    # measures the other core.
    assert "web core busy 85%" in sync.note and "other core was the bottleneck" in sync.note
    assert by_name["track-celery rows stored / requests completed"].ok is False
    # The synchronous path with the Celery workers running its batch step: the same target.
    sync_celery = by_name["web core django track-sync-celery saturated (8 conn)"]
    assert sync_celery.ok is True and sync_celery.ratio == pytest.approx(0.65)


def test_split_core_busy_share_from_proc_stat_ticks():
    """benchmarks/split.py: the busy share of a set of cores between two /proc/stat readings
    (idle and iowait excluded), and a live reading has every core of this machine."""
    before = {0: (100, 1000), 1: (500, 1000)}
    after = {0: (190, 1100), 1: (600, 1100)}
    assert split._busy(before, after, {0}) == pytest.approx(0.9)
    assert split._busy(before, after, {0, 1}) == pytest.approx(0.95)
    assert split._busy(before, after, {7}) != split._busy(before, after, {7})  # nan: no such core
    ticks = split._core_ticks()
    assert set(ticks) == set(range(os.cpu_count() or 1)) or set(ticks) >= os.sched_getaffinity(0)
    assert all(0 <= busy <= total for busy, total in ticks.values())


def test_verdict_counts_a_request_durable_by_its_activity_or_its_intake_row():
    """benchmarks/verdict.py: the intake's payload is encrypted, so a sampled request's intake
    row is recognised by its id, which its activity keeps once stored."""
    mine, other = uuid.uuid4(), uuid.uuid4()
    assert verdict.durable(mine, [], mine)  # stored (with its verdict) at the response
    assert verdict.durable(None, [other, mine], mine)  # in the intake at the response
    assert verdict.durable(None, [str(mine)], mine)  # ids compared as text
    assert not verdict.durable(None, [other], mine)  # neither: not durable at the response
    assert not verdict.durable(None, [other], None)  # never stored


def test_thread_cpu_is_split_between_the_request_thread_and_the_others():
    """benchmarks/threads.py: a process's main thread counts as the request thread, every
    other thread (the tracking writer) apart."""
    import threading

    burnt, done = threading.Event(), threading.Event()

    def burn():
        end = time.thread_time() + 0.3
        while time.thread_time() < end:
            pass
        burnt.set()
        done.wait(10)  # alive while measured: a thread's own counters go with it

    worker = threading.Thread(target=burn)
    before = threads.snapshot([os.getpid()])
    worker.start()
    assert burnt.wait(10)
    after = threads.snapshot([os.getpid()])
    done.set()
    worker.join()
    other = after[1] - before[1]
    assert other >= 0.1, (before, after)  # the burning thread's time lands in "other"
    assert after[0] - before[0] < other
    assert os.getpid() in threads._children(os.getppid())


@pytest.mark.django_db(transaction=True)
def test_whole_request_parts_switch_each_part_off_and_restore_it(monkeypatch):
    """benchmarks/whole_requests.py: only the last variant journals events, the decorator and
    build variants record nothing, and every patch is undone afterwards."""
    from contextlib import nullcontext
    from unittest import mock

    from benchmarks import whole_requests
    from tracking.capture import decorators
    from tracking.capture.tracker import ActivityTracker
    from tracking.pipeline import writer

    monkeypatch.setattr(whole_requests, "ROUNDS", 2)
    built, queued = [], []
    real_build, real_record, real_submit = (
        ActivityTracker.build_event,
        ActivityTracker.record,
        writer.submit,
    )

    def counting_build(self, *args, **kwargs):
        event = real_build(self, *args, **kwargs)
        built.append(event)
        return event

    monkeypatch.setattr(ActivityTracker, "build_event", counting_build)
    nothing = lambda *a, **k: None  # noqa: E731
    variants = {
        "untracked": ("/t/ok/", nullcontext),
        "decorator": (
            "/t/rec/pay/",
            lambda: mock.patch.object(decorators, "_record", nothing),
        ),
        "built": (
            "/t/rec/pay/",
            lambda: mock.patch.object(ActivityTracker, "record", nothing),
        ),
        "journaled": (
            "/t/rec/pay/",
            lambda: mock.patch.object(writer, "submit", queued.append),
        ),
    }
    best = whole_requests.measure(variants, 20, ["81.2.69.160"], ["Mozilla/5.0"])
    assert set(best) == set(variants) and all(v > 0 for v in best.values())
    # Warm-up (20) + measured (20) per round: built in two variants, queued in one.
    assert len(built) == 2 * 2 * 40 and len(queued) == 2 * 40
    assert {e.endpoint for e in queued} == {"/t/rec/pay/"}
    assert queued[0].forwarded_for == "81.2.69.160" and queued[0].user_agent == "Mozilla/5.0"
    assert ActivityTracker.record is real_record and writer.submit is real_submit
    assert decorators._record.__name__ == "_record"
    from tracking.pipeline import journal

    journal.release(queued)
    steps = whole_requests.increments(best, list(variants))
    assert list(steps) == ["decorator", "built", "journaled"]
    assert steps["built"] == pytest.approx(best["built"] - best["decorator"])
