"""Durable local spool: events that could not be written yet, kept on disk until they are.

Layout of ``TRACKING_SPOOL_DIR``:

- ``seg-<time>-<pid>-<n>.ndjson``: append-only segments, one event (``Event.to_dict()``) per
  line, encrypted with ``TRACKING_ENCRYPTION_KEYS`` (AES-GCM, the ciphertext format of
  ``tracking.integrity.crypto``; plaintext JSON lines of older spools are still read). ``append`` writes whole lines under an exclusive ``flock`` and ``fsync``s before it
  returns: an appended event survives a crash of the process.
- ``*.replaying-<pid>``: a segment claimed by a replay (rename under the same lock, so no
  appender can write into a claimed file). A claim left by a dead process is taken over.
- ``rejected.ndjson``: dead letters — events that can never become rows, and corrupt lines,
  each with the reason (the event encrypted like a segment line; ``decode_line`` reads
  it). Never replayed automatically; kept for an operator.
- ``full.count``: how many events were refused because the segments reached
  ``TRACKING_SPOOL_MAX_BYTES`` (a health alarm until an operator deletes the file).

``replay(feed)`` hands claimed segments in order to ``feed`` (``tracking.pipeline.ingest.ingest``:
idempotent, stored ids are skipped), keeps what it rejected in the dead-letter file, and
deletes a segment only after every event in it was stored or rejected. If the database is
still unavailable (``feed`` returned events it could not write), the segment is released
unchanged for the next attempt.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import connections, router

from tracking.conf import tracking_settings
from tracking.integrity import crypto
from tracking.models import Activity

logger = logging.getLogger("tracking.spool")

SEGMENT_PREFIX = "seg-"
SEGMENT_SUFFIX = ".ndjson"
CLAIM_MARK = ".replaying-"
REJECTED = "rejected.ndjson"
FULL_COUNT = "full.count"
# Associated data of spooled ciphertexts: a spool line cannot pass for a stored field.
AAD = "tracking.spool"
MAX_SEGMENT_BYTES = 8 * 1024 * 1024

_lock = threading.Lock()
_state: dict[str, Any] = {"path": None, "fd": None, "n": 0, "pid": None}
_counters = {"appended": 0, "replayed": 0, "corrupt": 0, "rejected": 0, "refused_full": 0}


class SpoolError(Exception):
    """The spool is not configured or not writable."""


class SpoolFull(SpoolError):
    """The segments reached ``TRACKING_SPOOL_MAX_BYTES``; the events were not spooled."""


def default_folder() -> Path:
    """Where the spool and the journal live when ``TRACKING_SPOOL_DIR`` is not set: a folder of
    this user's in the system's temporary directory, one per database (two sites on one host
    never replay into each other's). It survives a killed process, not a reboot: a machine
    crash needs a persistent ``TRACKING_SPOOL_DIR`` (check W010)."""
    db = connections[router.db_for_write(Activity)].settings_dict
    identity = "|".join(str(db.get(k) or "") for k in ("ENGINE", "NAME", "HOST", "PORT"))
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"django-activity-tracking-{os.getuid()}-{digest}"


def folder() -> Path:
    """The spool's folder: ``TRACKING_SPOOL_DIR``, else ``default_folder()``."""
    configured = tracking_settings.SPOOL_DIR
    return Path(configured) if configured else default_folder()


def directory() -> Path:
    path = folder()
    if tracking_settings.SPOOL_DIR:
        path.mkdir(parents=True, exist_ok=True)
        return path
    # A shared temporary directory: ours alone (0700, owned by us), or not used at all.
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        info = path.lstat()
    except OSError as exc:
        raise SpoolError(f"cannot create the default spool folder {path}: {exc}") from exc
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise SpoolError(
            f"the default spool folder {path} is not a private folder of this user; "
            "set TRACKING_SPOOL_DIR"
        )
    return path


def _plain(item: Any) -> Any:
    data = item.to_dict() if hasattr(item, "to_dict") else item
    # Through JSON once so values without a JSON type (dates, UUIDs) become text.
    return json.loads(json.dumps(data, ensure_ascii=False, default=str))


def _encode(item: Any) -> bytes:
    """One encrypted line; without encryption keys nothing is written in clear."""
    try:
        return (crypto.encrypt(_plain(item), AAD) + "\n").encode("ascii")
    except ImproperlyConfigured as exc:
        raise SpoolError(f"cannot encrypt spooled events: {exc}") from exc


# Values without a JSON type (dates, UUIDs) become text, as in ``_plain``; ASCII escapes keep
# hostile text (lone surrogates) encodable, and json.loads gives it back unchanged.
_JSON = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), default=str)
_FIELDS: dict[type, tuple[str, ...]] = {}


def event_json(event: Any) -> bytes:
    """An ``Event``'s JSON (ASCII) as ``Event.to_dict()`` would give it, in one pass: the
    journal runs it in the request (tracking.pipeline.journal), where the copies of ``asdict``
    and ``_plain`` cost more than the encryption. Other items go through ``_plain``."""
    if not dataclasses.is_dataclass(event):
        return _JSON.encode(_plain(event)).encode("ascii")
    names = _FIELDS.get(type(event))
    if names is None:
        names = _FIELDS[type(event)] = tuple(f.name for f in dataclasses.fields(event))
    data = {name: getattr(event, name) for name in names}
    ts = data.get("timestamp")
    if ts is not None and hasattr(ts, "isoformat"):
        data["timestamp"] = ts.isoformat()  # as Event.to_dict() writes it
    return _JSON.encode(data).encode("ascii")


def seal(plain: bytes) -> bytes:
    """The spool line of an event's JSON (``event_json``): encrypted, newline-terminated."""
    try:
        token = crypto.encrypt_bytes(plain, AAD)
    except ImproperlyConfigured as exc:
        raise SpoolError(f"cannot encrypt spooled events: {exc}") from exc
    return (token + "\n").encode("ascii")


def encode(event: Any) -> bytes:
    """``_encode`` of one ``Event`` in one JSON pass (``seal(event_json(event))``). Decoded by
    ``decode_line`` like any spool line."""
    if not dataclasses.is_dataclass(event):
        return _encode(event)
    return seal(event_json(event))


def decode_line(raw: bytes) -> Any:
    """A spooled line (or a dead letter's ``event``) as data; plaintext JSON of older spools is
    read as it is. Raises ``ValueError`` for a line that is neither."""
    text = raw.decode("utf-8").strip()
    if text.startswith(crypto.PREFIX + ":"):
        try:
            return crypto.decrypt(text, AAD)
        except crypto.DecryptionError as exc:
            raise ValueError(str(exc)) from exc
    return json.loads(text)


def _segments_bytes(folder: Path) -> int:
    total = 0
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith(SEGMENT_PREFIX):
                try:
                    total += entry.stat().st_size
                except FileNotFoundError:
                    continue
    return total


def _count_full(folder: Path, n: int) -> None:
    fd = os.open(str(folder / FULL_COUNT), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        text = os.read(fd, 64).decode("ascii", "replace").strip()
        count = (int(text) if text.isdigit() else 0) + n
        os.lseek(fd, 0, os.SEEK_SET)
        os.ftruncate(fd, 0)
        os.write(fd, f"{count}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def refused_full(folder: Path) -> int:
    try:
        text = (folder / FULL_COUNT).read_text(encoding="ascii").strip()
    except (FileNotFoundError, UnicodeDecodeError):
        return 0
    return int(text) if text.isdigit() else 0


def _open_segment(folder: Path) -> tuple[str, int]:
    _state["n"] += 1
    name = f"{SEGMENT_PREFIX}{time.time_ns():020d}-{os.getpid()}-{_state['n']}{SEGMENT_SUFFIX}"
    path = str(folder / name)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    return path, fd


def _close_current() -> None:
    fd = _state["fd"]
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            logger.debug("closing a spool segment failed", exc_info=True)
    _state.update(path=None, fd=None)


def _still_ours(path: str, fd: int) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except OSError:
        return False


def append(events: Iterable[Any]) -> int:
    """Append events durably (written and fsynced before returning); returns the count."""
    lines = [_encode(e) for e in events]
    if not lines:
        return 0
    blob = b"".join(lines)
    folder = directory()
    cap = tracking_settings.SPOOL_MAX_BYTES
    if cap is not None and _segments_bytes(folder) + len(blob) > cap:
        _count_full(folder, len(lines))
        _counters["refused_full"] += len(lines)
        raise SpoolFull(
            f"the spool holds TRACKING_SPOOL_MAX_BYTES ({cap}) already: {len(lines)} events "
            "not spooled"
        )
    with _lock:
        if _state["pid"] != os.getpid():  # forked: never share a segment with the parent
            _state.update(path=None, fd=None, n=0, pid=os.getpid())
        if _state["path"] and os.path.dirname(_state["path"]) != str(folder):
            _close_current()  # the spool directory setting changed
        for _attempt in range(5):
            if _state["fd"] is None:
                _state["path"], _state["fd"] = _open_segment(folder)
            path, fd = _state["path"], _state["fd"]
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                if not _still_ours(path, fd):  # claimed by a replay meanwhile
                    continue
                os.write(fd, blob)
                os.fsync(fd)
                size = os.fstat(fd).st_size
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                if not _still_ours(path, fd):
                    _close_current()
            if size >= MAX_SEGMENT_BYTES:
                _close_current()
            _counters["appended"] += len(lines)
            return len(lines)
        raise SpoolError("could not append to the spool")


def reject(item: Any, reason: str) -> None:
    """Keep an event that can never be stored (or a corrupt line) with its reason."""
    event = _encode(item).decode("ascii").strip()
    line = (json.dumps({"reason": reason, "event": event, "at": time.time()}) + "\n").encode()
    path = directory() / REJECTED
    fd = os.open(str(path), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)
    _counters["rejected"] += 1


def keep_dead_letters(dead_letters: Iterable[tuple[Any, str]]) -> None:
    """``reject`` each ``(event, reason)``; a failure is logged, never raised (the events were
    counted as rejected by whoever produced them)."""
    for item, reason in dead_letters:
        try:
            reject(item, reason)
        except Exception:
            logger.exception("could not keep a rejected event in the dead-letter file")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _segments(folder: Path) -> list[Path]:
    out = []
    for p in folder.iterdir():
        name = p.name
        if not name.startswith(SEGMENT_PREFIX):
            continue
        if CLAIM_MARK in name:
            owner = name.rsplit(CLAIM_MARK, 1)[1]
            if owner.isdigit() and not _pid_alive(int(owner)) or owner == str(os.getpid()):
                out.append(p)  # a claim whose replayer died, or an earlier one of ours
            continue
        if name.endswith(SEGMENT_SUFFIX):
            out.append(p)
    return sorted(out, key=lambda p: p.name)


def _claim(path: Path) -> Path | None:
    base = path.name.split(CLAIM_MARK, 1)[0]
    target = path.with_name(f"{base}{CLAIM_MARK}{os.getpid()}")
    if path == target:
        return path
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            os.rename(path, target)
        except FileNotFoundError:
            return None
    finally:
        os.close(fd)
    with _lock:
        if _state["path"] == str(path):
            _close_current()
    return target


def _release(claimed: Path) -> None:
    base = claimed.name.split(CLAIM_MARK, 1)[0]
    try:
        os.rename(claimed, claimed.with_name(base))
    except OSError:
        logger.exception("could not release spool segment %s", claimed)


@dataclass
class ReplayResult:
    segments: int = 0
    events: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    corrupt: int = 0
    remaining: int = 0
    errors: list[str] = field(default_factory=list)


def _read(claimed: Path, result: ReplayResult) -> list[dict]:
    events: list[dict] = []
    with open(claimed, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                data = decode_line(raw)
                if not isinstance(data, dict):
                    raise ValueError("not an object")
            except (ValueError, UnicodeDecodeError) as exc:
                result.corrupt += 1
                msg = f"{claimed.name}:{lineno}: corrupt spool line skipped ({exc})"
                result.errors.append(msg)
                logger.error(msg)
                _counters["corrupt"] += 1
                reject({"raw": raw.decode("utf-8", "replace")[:10000]}, msg)
                continue
            events.append(data)
    return events


_replay_lock = threading.Lock()


def replay(
    feed: Callable[[list[dict]], Any], limit: int | None = None, batch_size: int | None = None
) -> ReplayResult:
    """Hand spooled events to ``feed``; see the module docstring. Stops early if the database
    is down. ``feed(events)`` returns an ``IngestResult``-like object (``stored``,
    ``duplicates``, ``rejected``, ``dead_letters``, ``unwritten``, ``unavailable``).

    One replay at a time per process (claims are per process id, so two threads of one
    process must not work on the same claimed segment); other processes are excluded by the
    claim itself.
    """
    with _replay_lock:
        return _replay(feed, limit, batch_size)


class _Unwritten(Exception):
    """The feed could not write a chunk: the database is unavailable."""


def _replay(
    feed: Callable[[list[dict]], Any], limit: int | None, batch_size: int | None
) -> ReplayResult:
    result = ReplayResult()
    try:
        folder = directory()
    except SpoolError:
        return result
    size = int(batch_size or tracking_settings.BATCH_SIZE)
    for path in _segments(folder):
        if limit is not None and result.segments >= limit:
            break
        claimed = _claim(path)
        if claimed is None:
            continue
        try:
            events = _read(claimed, result)
            for i in range(0, len(events), size):
                chunk = events[i : i + size]
                res = feed(chunk)
                result.stored += res.stored
                result.duplicates += res.duplicates
                result.rejected += res.rejected
                keep_dead_letters(res.dead_letters)
                if res.unwritten:
                    raise _Unwritten(res.unavailable)
        except _Unwritten as exc:
            # Rows of the chunks already stored are skipped next time (ids are idempotent).
            _release(claimed)
            result.errors.append(f"database unavailable: {exc}")
            break
        except Exception:
            _release(claimed)
            logger.exception("spool replay failed on %s", claimed.name)
            raise
        result.segments += 1
        result.events += len(events)
        _counters["replayed"] += len(events)
        claimed.unlink(missing_ok=True)
    result.remaining = stats()["events"]
    return result


def pending() -> bool:
    """Cheap: is any segment waiting (without reading them)?"""
    try:
        folder = directory()
    except SpoolError:
        return False
    for _ in range(5):
        try:
            return any(
                p.name.startswith(SEGMENT_PREFIX) and p.stat().st_size > 0 for p in folder.iterdir()
            )
        except FileNotFoundError:
            continue  # renamed by a replayer (claim/release) between listing and stat
    return True  # still moving after five looks: something is being replayed


def _scan(folder: Path) -> tuple[int, int, int, float | None, bool]:
    files = events = size = 0
    oldest = None
    moved = False
    for p in folder.iterdir():
        if not p.name.startswith(SEGMENT_PREFIX):
            continue
        try:
            st = p.stat()
            with open(p, "rb") as fh:
                count = sum(1 for line in fh if line.strip())
        except FileNotFoundError:
            moved = True
            continue
        except OSError:
            continue
        files += 1
        events += count
        size += st.st_size
        oldest = st.st_mtime if oldest is None else min(oldest, st.st_mtime)
        if count == 0:
            files -= 1
    return files, events, size, oldest, moved


def stats() -> dict[str, Any]:
    """files, events, bytes and oldest (epoch seconds of the oldest pending segment, or None)."""
    try:
        folder = directory()
    except SpoolError:
        return {
            "files": 0,
            "events": 0,
            "bytes": 0,
            "oldest": None,
            "rejected": 0,
            "max_bytes": tracking_settings.SPOOL_MAX_BYTES,
            "refused_full": 0,
            **_counters,
        }
    for _ in range(5):
        files, events, size, oldest, moved = _scan(folder)
        # A replayer renames a segment when it claims or releases it: a file that vanished
        # between listing and reading was moved, not emptied; look again.
        if not moved:
            break
    rejected = 0
    rpath = folder / REJECTED
    if rpath.exists():
        with open(rpath, "rb") as fh:
            rejected = sum(1 for line in fh if line.strip())
    return {
        "files": files,
        "events": events,
        "bytes": size,
        "oldest": oldest,
        "rejected": rejected,
        "max_bytes": tracking_settings.SPOOL_MAX_BYTES,
        "refused_full": refused_full(folder),
        **{f"{k}_total": v for k, v in _counters.items()},
    }


def reset_after_fork() -> None:
    """In a forked child: fresh locks (a parent thread may have held one at fork time) and
    no inherited segment."""
    global _lock, _replay_lock
    _lock = threading.Lock()
    _replay_lock = threading.Lock()
    _state.update(path=None, fd=None, n=0, pid=os.getpid())


os.register_at_fork(after_in_child=reset_after_fork)
