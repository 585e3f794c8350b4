"""Recording by path, without decorators: ``TRACKING_PATHS`` for the ``TrackingMiddleware``.

``TRACKING_PATHS`` is a list of entries, the first match wins::

    {"path": r"^/accounts/password_reset/", "type": "ACCOUNT", "methods": ["POST"],
     "async": False}

``path`` is a regular expression searched in ``request.path_info``; ``type`` an activity type;
``methods`` the HTTP methods recorded (omitted: every method); ``async`` hands the event to the
background writer instead of writing it before the response goes out. The default records
login/logout/token requests as ``AUTH`` and the admin's state-changing requests as ``ADMIN``.
A request that ``@track`` records is left to it; auth signals add to the one activity.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from tracking.activity_types import all_types
from tracking.capture import context
from tracking.capture.request import django_request, prepare
from tracking.capture.tracker import _UNSET, get_tracker
from tracking.conf import on_reload, tracking_settings
from tracking.pipeline import handoff

logger = logging.getLogger("tracking.recording")

ENTRY_KEYS = frozenset({"path", "type", "methods", "async"})


@dataclass(frozen=True, slots=True)
class PathEntry:
    pattern: re.Pattern
    type: str
    methods: frozenset[str] | None  # None: every method
    async_log: bool

    def matches(self, path: str, method: str) -> bool:
        if self.methods is not None and method not in self.methods:
            return False
        return self.pattern.search(path) is not None


def entry_problems(entries: Any) -> list[str]:
    """What is wrong with a ``TRACKING_PATHS`` value (empty when it is valid)."""
    if not isinstance(entries, list | tuple):
        return [f"must be a list of entries, got {type(entries).__name__}"]
    problems = []
    types = all_types()
    for i, entry in enumerate(entries):
        where = f"entry {i}"
        if not isinstance(entry, dict):
            problems.append(f"{where}: must be a dict with 'path' and 'type'")
            continue
        unknown = set(entry) - ENTRY_KEYS
        if unknown:
            problems.append(f"{where}: unknown key(s) {sorted(unknown)}")
        path = entry.get("path")
        if not isinstance(path, str) or not path:
            problems.append(f"{where}: 'path' must be a regular expression (text)")
        else:
            try:
                re.compile(path)
            except re.error as exc:
                problems.append(f"{where}: 'path' {path!r} is not a regular expression: {exc}")
        kind = entry.get("type")
        if not isinstance(kind, str) or kind not in types:
            problems.append(
                f"{where}: 'type' {kind!r} is not an activity type ({', '.join(types)})"
            )
        methods = entry.get("methods")
        if methods is not None and (
            not isinstance(methods, list | tuple)
            or not methods
            or not all(isinstance(m, str) and m.strip() for m in methods)
        ):
            problems.append(f"{where}: 'methods' must be a non-empty list of HTTP methods")
        if not isinstance(entry.get("async", False), bool):
            problems.append(f"{where}: 'async' must be True or False")
    return problems


@lru_cache(maxsize=1)
def path_entries() -> tuple[PathEntry, ...]:
    """The compiled ``TRACKING_PATHS`` (an invalid value records nothing; the system check
    ``tracking.E160`` reports it)."""
    entries = tracking_settings.PATHS
    if entry_problems(entries):
        return ()
    out = []
    for entry in entries:
        methods = entry.get("methods")
        out.append(
            PathEntry(
                pattern=re.compile(entry["path"]),
                type=entry["type"],
                methods=None if methods is None else frozenset(m.strip().upper() for m in methods),
                async_log=bool(entry.get("async", False)),
            )
        )
    return tuple(out)


on_reload(path_entries.cache_clear)


def match(request: Any) -> PathEntry | None:
    req = django_request(request)
    path = req.path_info
    method = (req.method or "").upper()
    for entry in path_entries():
        if entry.matches(path, method):
            return entry
    return None


@dataclass(slots=True)
class Pending:
    """A request the middleware records once the response is there."""

    entry: PathEntry
    claim: context.Claim
    started: float


def begin(request: Any) -> Pending | None:
    """Before the view: claim a matching request (None when the path is not recorded)."""
    entry = match(request)
    if entry is None:
        return None
    mine = context.claim(request, context.MIDDLEWARE)
    if mine is None:
        return None
    started = time.perf_counter()
    prepare(request)
    return Pending(entry=entry, claim=mine, started=started)


def still_mine(request: Any, pending: Pending | None) -> bool:
    """Whether the middleware still records this request (``@track`` did not take it over)."""
    return pending is not None and context.claim_of(request) is pending.claim


def finish(request: Any, pending: Pending, response: Any, user: Any = _UNSET) -> None:
    """After the view: build the one activity of the request and hand it off. Never raises."""
    tracker = get_tracker()
    try:
        event = tracker.build_event(
            request,
            response,
            activity_type=pending.entry.type,
            started=pending.started,
            user=user,
        )
        context.complete(event, pending.claim, request=request, response=response)
        tracker.record(event, async_log=pending.entry.async_log)
    except Exception:  # the response matters more than its log line
        handoff.count("record_errors")
        logger.exception("tracking: could not record a request")
