"""The write-ahead journal of ``async_log=True`` events (tracking.pipeline.journal).

An event is journaled (a plain write to this process's file) before the request goes on and
released once its batch was stored; a SIGKILLed process's journal is adopted by another one
and replayed, every acknowledged event stored exactly once; ``TRACKING_DURABLE_HANDOFF``
adds an fdatasync shared by the requests that arrive while one runs (group commit).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from django.core.management import call_command

from tests.test_faults import _db_url
from tracking.events import Event
from tracking.models import Activity
from tracking.pipeline import journal, spool, writer
from tracking.services import ActivityTracker

ROOT = Path(__file__).resolve().parents[1]


def _journal_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name.startswith(journal.PREFIX))


def _lines(path: Path) -> list[dict]:
    return [spool.decode_line(raw) for raw in path.read_bytes().splitlines() if raw.strip()]


@pytest.mark.django_db(transaction=True)
def test_event_is_journaled_before_the_request_goes_on_and_released_once_stored(
    settings, spool_dir
):
    settings.TRACKING_FLUSH_INTERVAL = 30  # the writer does not write on its own meanwhile
    event = Event(type="API", endpoint="/journaled", params={"n": 1})
    ActivityTracker().record(event, async_log=True)
    [path] = _journal_files(spool_dir)
    [line] = _lines(path)  # in the file (the kernel's cache) when record() returned
    assert line["id"] == event.id and line["endpoint"] == "/journaled"
    assert line["params"] == {"n": 1}
    assert b"/journaled" not in path.read_bytes()  # encrypted like the spool
    assert Event.from_dict(line).to_dict() == event.to_dict()  # the replay builds the same
    assert writer.flush(10)
    assert Activity.objects.filter(id=event.id).count() == 1
    assert path.stat().st_size == 0  # released: truncated, nothing to replay
    assert journal.pending() == 0
    assert spool.stats()["events"] == 0  # journals are not spool backlog (health)


@pytest.mark.django_db
def test_a_live_process_journal_is_never_adopted_a_dead_one_is(spool_dir, tmp_path):
    event = Event(type="API", endpoint="/mine")
    assert journal.append(event)
    assert journal.adopt() == 0  # ours: locked while we live
    [mine] = _journal_files(spool_dir)
    assert mine.name.startswith(f"{journal.PREFIX}{os.getpid()}-")
    # A process that journaled one event and died without releasing it.
    script = textwrap.dedent(
        """
        import os, sys
        os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
        import django
        django.setup()
        from django.conf import settings
        settings.TRACKING_SPOOL_DIR = sys.argv[1]
        from tracking.events import Event
        from tracking.pipeline import journal
        assert journal.append(Event(type="API", endpoint="/dead"))
        os.kill(os.getpid(), 9)
        """
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", script, str(spool_dir)], env=env, timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert len(_journal_files(spool_dir)) == 2
    assert journal.adopt() == 1
    [segment] = [p for p in spool_dir.iterdir() if p.name.startswith(spool.SEGMENT_PREFIX)]
    assert [e["endpoint"] for e in _lines(segment)] == ["/dead"]
    assert len(_journal_files(spool_dir)) == 1  # ours stays
    journal.release([event])


KILLED = textwrap.dedent(
    """
    import os, sys, time
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    import django
    django.setup()
    from django.conf import settings
    settings.TRACKING_SPOOL_DIR = sys.argv[1]
    settings.TRACKING_DURABLE_HANDOFF = sys.argv[2] == "durable"
    settings.TRACKING_FLUSH_INTERVAL = 0.05
    settings.TRACKING_SEAL_ON_WRITE = False
    from tracking.events import Event
    from tracking.pipeline import journal, writer
    from tracking.services import ActivityTracker
    tracker = ActivityTracker()

    def say(text):  # one write per line: print() from two threads interleaves
        os.write(1, (text + "\\n").encode())

    def record(tag, n):
        for i in range(n):
            e = Event(type="API", endpoint=f"/{tag}/{i}")
            tracker.record(e, async_log=True)
            say(f"ACK {e.id}")

    record("stored", 5)  # stored and released
    assert writer.flush(30)
    writer._Config.released = lambda events: None
    record("unreleased", 5)  # stored, killed before the release: replay must not double them
    assert writer.flush(30)
    writer._Config.released = journal.release
    import faulthandler  # a stalled child shows its threads in the stderr the test prints
    faulthandler.dump_traceback_later(30, exit=False)
    from tracking.testing.faults import DatabaseFault, inserts_activities
    def slow(sql, params):  # the kill lands inside this batch: nothing of it is committed
        say("BATCH")
        time.sleep(60)
    DatabaseFault(slow, match=inserts_activities).start()
    record("queued", 20)
    time.sleep(60)
    """
)


@pytest.mark.parametrize("mode", ["default", "durable"])
@pytest.mark.django_db(transaction=True)
def test_sigkilled_process_loses_no_acknowledged_event_and_stores_each_once(
    tmp_path, settings, mode
):
    folder = tmp_path / "spool"
    settings.TRACKING_SPOOL_DIR = str(folder)
    env = dict(os.environ, DATABASE_URL=_db_url(), PYTHONPATH=str(ROOT))
    env.pop("TEST_DB_SUFFIX", None)
    errors = open(tmp_path / "child-stderr.txt", "w+")  # noqa: SIM115 - read back on failure
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED, str(folder), mode],
        stdout=subprocess.PIPE,
        stderr=errors,
        env=env,
        text=True,
    )
    acked: list[str] = []
    batch = False
    deadline = time.monotonic() + 90  # a loaded machine
    try:
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith("ACK "):
                acked.append(line.split()[1])
            elif line.startswith("BATCH"):
                batch = True
            if len(acked) == 30 and batch:
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    errors.seek(0)
    assert len(acked) == 30 and batch, errors.read()[-3000:]
    assert Activity.objects.count() == 10  # the first two groups; the last one was in flight
    assert len(_journal_files(folder)) == 1
    # The next process (here: this one) adopts the dead one's journal and replays it.
    call_command("tracking", "flush", "--no-geo")
    stored = list(Activity.objects.values_list("id", flat=True))
    assert sorted(str(i) for i in stored) == sorted(acked)  # all of them, each once
    assert _journal_files(folder) == [] and spool.stats()["events"] == 0


@pytest.mark.django_db
def test_durable_handoff_shares_one_fdatasync_among_concurrent_requests(
    settings, spool_dir, monkeypatch
):
    settings.TRACKING_DURABLE_HANDOFF = True
    synced: list[int] = []
    real = os.fdatasync

    def slow_sync(fd):  # a disk that takes 20 ms per sync: requests arrive meanwhile
        time.sleep(0.02)
        real(fd)
        synced.append(fd)

    monkeypatch.setattr(journal.os, "fdatasync", slow_sync)
    events = [Event(type="API", endpoint=f"/g/{i}") for i in range(40)]
    done: list[float] = []
    start = threading.Barrier(8)

    def request(chunk):
        start.wait()
        for e in chunk:
            journal.append(e, durable=True)
            # Acknowledged only once a sync covering the line has finished.
            assert journal._where[e.id].synced >= 1
            done.append(time.monotonic())

    threads = [threading.Thread(target=request, args=(events[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(done) == 40
    # One sync per group, not one per request (about two per round of the 8 threads here).
    assert 1 <= len(synced) <= 15, len(synced)
    [path] = _journal_files(spool_dir)
    assert sorted(e["id"] for e in _lines(path)) == sorted(e.id for e in events)
    journal.release(events)
    assert path.stat().st_size == 0


@pytest.mark.django_db
def test_journal_rotates_under_load_and_deletes_released_files(spool_dir, monkeypatch):
    monkeypatch.setattr(journal, "ROTATE_BYTES", 2000)
    first = [Event(type="API", endpoint=f"/r/{i}") for i in range(20)]
    for e in first:
        journal.append(e)
    journal.release(first[:1])  # events still pending: the current file is rotated
    second = [Event(type="API", endpoint="/r/late")]
    journal.append(second[0])
    assert len(_journal_files(spool_dir)) == 2
    journal.release(first[1:])
    assert len(_journal_files(spool_dir)) == 1  # the old file, all released, is deleted
    journal.release(second)
    [path] = _journal_files(spool_dir)
    assert path.stat().st_size == 0


def test_without_spool_dir_the_journal_is_a_private_temporary_folder(
    settings, tmp_path, monkeypatch
):
    """Unset TRACKING_SPOOL_DIR: the journal still survives a killed process, in a folder of
    this user's (0700) in the temporary directory, one per database."""
    import tempfile

    settings.TRACKING_SPOOL_DIR = None
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    event = Event(type="API", endpoint="/no-spool-dir")
    assert journal.append(event) is True
    [folder] = tmp_path.glob("django-activity-tracking-*")
    assert folder == spool.default_folder()
    assert folder.stat().st_mode & 0o777 == 0o700
    [path] = _journal_files(folder)
    assert [e["endpoint"] for e in _lines(path)] == ["/no-spool-dir"]
    journal.release([event])


def test_a_default_folder_others_can_write_is_never_used(settings, tmp_path, monkeypatch):
    """Someone else's (or a world-writable) folder at the default path could swap our files:
    nothing is journaled there and the error names the setting."""
    import tempfile

    settings.TRACKING_SPOOL_DIR = None
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    hostile = spool.default_folder()
    hostile.mkdir(mode=0o777)
    hostile.chmod(0o777)
    before = journal.stats()["journal_unjournaled"]
    assert journal.append(Event(type="API")) is False
    assert journal.stats()["journal_unjournaled"] == before + 1
    with pytest.raises(spool.SpoolError, match="TRACKING_SPOOL_DIR"):
        spool.directory()
    assert not list(hostile.iterdir())


def test_a_reused_pid_never_overwrites_a_dead_process_journal(spool_dir):
    """Names are unique (time), so a new process with a dead one's pid starts a file of its
    own; an unnamed file left by a process killed while creating one is removed."""
    dead = spool_dir / f"{journal.PREFIX}{os.getpid()}-1-1{journal.SUFFIX}"
    dead.write_bytes(spool.encode(Event(type="API", endpoint="/before-reuse")))
    (spool_dir / f".{journal.PREFIX}{os.getpid()}-2-1.new").write_bytes(b"")
    event = Event(type="API", endpoint="/after-reuse")
    assert journal.append(event)
    assert [e["endpoint"] for e in _lines(dead)] == ["/before-reuse"]
    assert journal.adopt() == 1  # the dead file (unlocked); ours stays
    assert not list(spool_dir.glob(".wal-*"))
    journal.release([event])


@pytest.mark.django_db
def test_a_failed_sync_acknowledges_nothing(settings, spool_dir, monkeypatch):
    settings.TRACKING_DURABLE_HANDOFF = True

    def broken(fd):
        raise OSError(5, "I/O error")

    monkeypatch.setattr(journal.os, "fdatasync", broken)
    event = Event(type="API", endpoint="/eio")
    assert journal.append(event, durable=True) is False  # the caller keeps it in memory
    assert journal._where[event.id].synced == 0
    monkeypatch.undo()
    later = Event(type="API", endpoint="/ok")
    assert journal.append(later, durable=True)
    assert journal._where[later.id].synced == journal._where[later.id].written
    journal.release([event, later])


def test_hostile_text_is_journaled_and_read_back_unchanged(spool_dir):
    event = Event(
        type="API", endpoint="/h\ud800x", user_agent="ø\x00\u202e", params={"k": "\udfff"}
    )
    assert journal.append(event)
    [path] = [p for p in _journal_files(spool_dir) if p.stat().st_size]
    [line] = [e for e in _lines(path) if e["id"] == event.id]
    assert Event.from_dict(line).to_dict() == event.to_dict()
    journal.release([event])
