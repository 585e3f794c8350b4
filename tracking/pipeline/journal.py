"""Write-ahead journal of the async hand-off: what an ``async_log=True`` event survives.

``append(event)`` writes the event as one line (the spool's encrypted format) to this
process's journal file in ``TRACKING_SPOOL_DIR`` with a plain ``write()`` before the event
goes on the writer's in-memory queue. Once ``write()`` returned the line is in the kernel's
page cache: a SIGKILL of the process (OOM killer, gunicorn's worker timeout, a crash of the
interpreter) does not lose it. A machine crash or power loss can: ``durable=True``
(``TRACKING_DURABLE_HANDOFF``) also waits for an ``fdatasync`` of the journal, shared by
every request of the process that appended meanwhile (group commit: one request syncs, the
ones that arrive during its sync wait and are covered by the next one).

``release(events)`` (the writer thread, once a batch was stored or kept in the spool; for a
batch published to Celery once the database holds it, ``tracking.pipeline.confirm``) forgets
them; a journal file whose events are all released is truncated
(the current one) or deleted (an older one). The current file is rotated at
``ROTATE_BYTES`` while events are still pending, so files stay small under steady load.

Files are ``wal-<pid>-<time>-<n>.ndjson``; the owner holds an exclusive ``flock`` on each for as
long as it lives, which the kernel drops when the process dies, however it dies.
``adopt()`` (run before every spool replay: the writer's housekeeping, ``tracking flush``)
renames every journal file nobody holds a lock on into a spool segment, and the spool's
replay stores it. Replay is idempotent: ``ingest`` skips ids already stored, so events the
dead process had written but not yet released are not stored twice.

Bounds: a process's journal holds at most what its writer has not finished (the queue,
``TRACKING_QUEUE_SIZE``, plus one batch and the writer's retry buffer) plus at most
``ROTATE_BYTES`` of released lines per file; it does not count towards
``TRACKING_SPOOL_MAX_BYTES`` until it is adopted.
"""

from __future__ import annotations

import fcntl
import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tracking.conf import tracking_settings
from tracking.pipeline import spool

logger = logging.getLogger("tracking.spool")

PREFIX = "wal-"
SUFFIX = ".ndjson"
ROTATE_BYTES = 1024 * 1024
GROUP_WAIT = 0.001  # seconds a sync waits for the lines other threads are writing


class _File:
    """One journal file of this process."""

    __slots__ = ("path", "fd", "pending", "size", "written", "synced", "cond", "syncing", "closed")

    def __init__(self, path: str, fd: int) -> None:
        self.path, self.fd = path, fd
        self.pending = 0  # appended, not yet released
        self.size = 0
        self.written = 0  # lines appended (sequence of the last one)
        self.synced = 0  # lines covered by the last fdatasync
        self.cond = threading.Condition(threading.Lock())
        self.syncing = False  # a thread is in fdatasync for this file
        self.closed = False


_lock = threading.Lock()
_state: dict[str, Any] = {"pid": None, "folder": None, "current": None, "n": 0, "writing": 0}
_files: list[_File] = []
_where: dict[str, _File] = {}  # event id -> the file holding its line
_json: dict[str, bytes] = {}  # event id -> its JSON, for append(keep_json=True)
_counters = {"journaled": 0, "released": 0, "syncs": 0, "adopted": 0, "unjournaled": 0}


_resolved: dict[Any, str] = {}  # TRACKING_SPOOL_DIR value -> the folder in use


def _folder() -> str | None:
    """``TRACKING_SPOOL_DIR``, or the spool's private default folder (``spool.folder``)."""
    key = tracking_settings.SPOOL_DIR or ("default", tempfile.gettempdir())
    found = _resolved.get(key)
    if found is None:
        try:
            found = _resolved[key] = str(spool.directory())
        except spool.SpoolError as exc:
            logger.error("tracking: no journal: %s", exc)
            return None
    return found


def _open(folder: str, durable: bool) -> _File:
    _state["n"] += 1
    # A unique name (never a dead process's file whose pid was reused), created under a name
    # adopt() ignores and locked before it gets its journal name: an adopter must never see
    # it unlocked (it would take an empty file for a dead one).
    stem = f"{os.getpid()}-{time.time_ns()}-{_state['n']}"
    hidden = os.path.join(folder, f".{PREFIX}{stem}.new")
    path = os.path.join(folder, f"{PREFIX}{stem}{SUFFIX}")
    fd = os.open(hidden, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o600)
    # Held until the file is deleted or the process dies: "alive" for adopt().
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.rename(hidden, path)
    if durable:  # the new name must survive a machine crash too
        _sync_dir(folder)
    f = _File(path, fd)
    _files.append(f)
    return f


def _sync_dir(folder: str) -> None:
    dfd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _current(folder: str, durable: bool) -> _File:
    if _state["pid"] != os.getpid():
        _forget_inherited()
    cur = _state["current"]
    if cur is None or _state["folder"] != folder:
        if _state["folder"] != folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
        cur = _state["current"] = _open(folder, durable)
        _state["folder"] = folder
    return cur


def append(event: Any, *, durable: bool = False, keep_json: bool = False) -> bool:
    """Journal ``event`` (an ``Event``); False when it could not be (no usable spool folder, no
    encryption key, a full disk): the caller keeps it in memory only, as before.
    ``keep_json``: also keep the event's JSON in memory until the event is released
    (``json_of``), for a publisher that sends it instead of encoding the event again."""
    folder = _folder()
    if folder is None:
        _counters["unjournaled"] += 1
        return False
    try:
        plain = spool.event_json(event)
        line = spool.seal(plain)
        with _lock:
            f = _current(folder, durable)
            if durable:
                _state["writing"] += 1  # a hint for _sync (read without the lock)
            try:
                os.write(f.fd, line)
            finally:
                if durable:
                    _state["writing"] -= 1
            f.size += len(line)
            f.pending += 1
            f.written += 1
            seq = f.written
            _where[event.id] = f
            if keep_json:
                _json[event.id] = plain
        _counters["journaled"] += 1
        if durable:
            _sync(f, seq)
    except Exception:  # never lose the event for the journal's sake: it still gets queued
        logger.exception("tracking: journal unavailable; the event is kept in memory only")
        _counters["unjournaled"] += 1
        return False
    return True


def _sync(f: _File, seq: int) -> None:
    """Return once line ``seq`` of ``f`` is on disk. One thread syncs at a time; the lines
    written while it syncs are covered by the next sync, which one of their threads runs for
    all of them (group commit)."""
    with f.cond:
        while not (f.synced >= seq or f.closed):  # covered, or deleted: all were stored
            if not f.syncing:
                f.syncing = True
                break
            f.cond.wait()
        else:
            return
    target = f.synced
    try:
        # Threads of this process writing their line right now join this sync (at most
        # GROUP_WAIT); with one request thread per process nobody is waited for.
        until = time.monotonic() + GROUP_WAIT
        while _state["writing"] and time.monotonic() < until:
            time.sleep(0.00005)
        written = f.written
        os.fdatasync(f.fd)
        target = written  # only a sync that succeeded covers anyone
        _counters["syncs"] += 1
    finally:
        with f.cond:
            f.synced = max(f.synced, target)
            f.syncing = False
            f.cond.notify_all()


def release(events: Iterable[Any]) -> None:
    """These events were stored or spooled (or published, where the publisher does not
    wait for them to be stored): their lines are no longer needed."""
    release_ids(getattr(event, "id", "") for event in events)


def published(events: Iterable[Any]) -> None:
    """These events are on the broker: their kept JSON is no longer needed, their lines are
    (``release_ids`` once the database holds them: ``tracking.pipeline.confirm``)."""
    if not _json:
        return
    with _lock:
        for event in events:
            _json.pop(getattr(event, "id", ""), None)


def release_ids(ids: Iterable[str]) -> None:
    """``release`` by event id."""
    if not _where:
        return
    with _lock:
        if _state["pid"] != os.getpid():
            return
        for key in ids:
            _json.pop(key, None)
            f = _where.pop(key, None)
            if f is not None:
                f.pending -= 1
                _counters["released"] += 1
        cur = _state["current"]
        for f in list(_files):
            if f.pending > 0:
                continue
            if f is cur:
                if f.size:
                    os.ftruncate(f.fd, 0)  # O_APPEND: the next line goes to offset 0
                    f.size = 0
            else:
                _drop(f)
        if cur is not None and cur.pending and cur.size >= ROTATE_BYTES:
            folder = _state["folder"]
            _state["current"] = _open(folder, bool(tracking_settings.DURABLE_HANDOFF))


def _drop(f: _File) -> None:
    try:
        os.unlink(f.path)
    except FileNotFoundError:
        pass
    with f.cond:  # never close an fd another thread is syncing (its number is reused)
        while f.syncing:
            f.cond.wait()
        f.closed = True
        os.close(f.fd)
        f.cond.notify_all()
    _files.remove(f)


def adopt(folder: str | None = None) -> int:
    """Turn the journals of dead processes into spool segments; returns how many files."""
    folder = folder or _folder()
    if folder is None:
        return 0
    try:
        listing = os.listdir(folder)
    except FileNotFoundError:
        return 0
    for name in listing:
        if name.startswith("." + PREFIX):  # a process died between creating and naming one
            _remove_if_unlocked(os.path.join(folder, name))
    names = [n for n in listing if n.startswith(PREFIX) and n.endswith(SUFFIX)]
    adopted = 0
    for name in names:
        path = os.path.join(folder, name)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its process is alive (or another adopter holds it right now)
            st = os.fstat(fd)
            try:
                if not os.path.samestat(st, os.stat(path)):
                    continue
            except FileNotFoundError:
                continue  # adopted by another process meanwhile
            if st.st_size == 0:
                os.unlink(path)
                continue
            stem = name[len(PREFIX) : -len(SUFFIX)]
            target = f"{spool.SEGMENT_PREFIX}{st.st_mtime_ns:020d}-{stem}-wal{spool.SEGMENT_SUFFIX}"
            os.rename(path, os.path.join(folder, target))
            adopted += 1
        finally:
            os.close(fd)
    if adopted:
        _counters["adopted"] += adopted
        logger.warning("tracking: replaying %d journal files of processes that died", adopted)
    return adopted


def _remove_if_unlocked(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.unlink(path)  # never written to: nothing is lost
    except (BlockingIOError, FileNotFoundError):
        pass  # being named by its (live) owner, or gone
    finally:
        os.close(fd)


def json_of(event: Any) -> bytes | None:
    """The JSON (``spool.event_json``) of an event ``append(event, keep_json=True)`` journaled,
    until the event is released; None for any other event."""
    return _json.get(getattr(event, "id", ""))


def pending() -> int:
    """Events of this process journaled and not yet released."""
    return len(_where)


def stats() -> dict[str, int]:
    return {f"journal_{k}": v for k, v in _counters.items()} | {"journal_pending": pending()}


def close() -> None:
    """Delete this process's journal files whose events were all released (at exit)."""
    with _lock:
        if _state["pid"] != os.getpid():
            return
        for f in list(_files):
            if f.pending <= 0:
                _drop(f)
        if _state["current"] not in _files:
            _state["current"] = None


def _forget_inherited() -> None:
    """In a forked child: the parent's files stay the parent's (its locks too)."""
    for f in _files:
        try:
            os.close(f.fd)
        except OSError:
            pass
    _files.clear()
    _where.clear()
    _json.clear()
    _state.update(pid=os.getpid(), folder=None, current=None, n=0, writing=0)


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()
    _forget_inherited()


os.register_at_fork(after_in_child=_after_fork_in_child)
