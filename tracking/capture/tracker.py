"""``ActivityTracker``: the one recording path for live requests, imports and the demo.

``build_event`` turns a request (and its response or exception) into a plain ``Event``:
cheap work only (no database, no GeoIP, no User-Agent parsing — those happen in the batch
step, ``tracking.pipeline.ingest``). ``record`` hands the event off:

- ``async_log=False``: ingested in the caller; if the database is unavailable the event is
  appended to the durable spool and the caller carries on.
- ``async_log=True``: by ``TRACKING_ASYNC_HANDOFF``: ``"thread"`` (in-process writer),
  ``"celery"`` (the writer publishes batches to ``tracking.tasks.ingest_events``), ``"sync"``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any

from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.backends.base import SessionBase
from django.core.exceptions import BadRequest, PermissionDenied, SuspiciousOperation
from django.http import Http404
from django.utils.functional import SimpleLazyObject, empty

from tracking.capture.clientip import client_address
from tracking.capture.marks import mark_event
from tracking.capture.request import django_request, headers_of, params_of
from tracking.conf import tracking_settings
from tracking.enrich import breach
from tracking.enrich.useragent import truncate_user_agent
from tracking.events import Event
from tracking.integrity import macs as integrity
from tracking.pipeline import handoff
from tracking.pipeline.ingest import IngestResult

UTC = dt_timezone.utc

logger = logging.getLogger("tracking.recording")

_UNSET = object()

# What Django turns these exceptions into; anything else is a 500.
_EXCEPTION_STATUS = (
    (Http404, 404),
    (PermissionDenied, 403),
    (BadRequest, 400),
    (SuspiciousOperation, 400),
)


def exception_status(exc: BaseException) -> int:
    for cls, status in _EXCEPTION_STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def _anonymous_session(req: Any) -> bool:
    """True when ``req.user`` is Django's ``AuthenticationMiddleware`` user, not evaluated
    yet, over a session that holds no user: evaluating it would build ``AnonymousUser``
    through the auth backends and the session store for nothing (a tenth of what ``@track``
    adds to an anonymous request). Any other user object, a custom middleware's lazy user
    or a session that may hold a user takes the normal path."""
    lazy = req.__dict__.get("user") if hasattr(req, "__dict__") else None
    if not isinstance(lazy, SimpleLazyObject) or "_cached_user" in req.__dict__:
        return False
    if lazy._wrapped is not empty:
        return False
    setup = lazy.__dict__.get("_setupfunc")
    if (
        getattr(setup, "__module__", None) != "django.contrib.auth.middleware"
        or not getattr(setup, "__qualname__", "").startswith(
            "AuthenticationMiddleware.process_request."
        )
    ):
        return False
    session = req.__dict__.get("session")
    if not isinstance(session, SessionBase):
        return False
    cache = session.__dict__.get("_session_cache")
    if cache is None:  # not loaded: empty only when there is no session key to load
        return session.session_key is None
    return SESSION_KEY not in cache


def user_of(request: Any, response: Any = None, view: Any = None) -> Any:
    """The authenticated user after the view ran (DRF authenticates inside the view)."""
    candidates = []
    ctx = getattr(response, "renderer_context", None)
    if isinstance(ctx, dict) and ctx.get("request") is not None:
        candidates.append(ctx["request"])
    view_request = getattr(view, "request", None)
    if view_request is not None:
        candidates.append(view_request)
    candidates.append(request)
    for req in candidates:
        if _anonymous_session(req):
            continue
        try:
            user = getattr(req, "user", None)
        except Exception:  # DRF raises for bad credentials; that is "anonymous"
            user = None
        if user is not None and getattr(user, "is_authenticated", False):
            return user
    return None


# Keys under which login forms and token endpoints carry the account being tried.
_CLAIMED_USERNAME_KEYS = ("username", "login", "email", "user", "user_name", "user_id")


def claimed_username(params: dict[str, Any]) -> str:
    """The username an unauthenticated request claims (a login form's ``username``), so failed
    logins name the account they targeted: credential stuffing, brute force and password
    spraying are counted per account. Ingest then attaches the event to that account when it
    exists, exactly as it does for an imported record carrying the same username."""
    for part in ("body", "query"):
        data = params.get(part)
        if not isinstance(data, dict):
            continue
        lowered = {str(k).lower(): v for k, v in data.items()}
        for key in _CLAIMED_USERNAME_KEYS:
            value = lowered.get(key)
            if isinstance(value, list) and value:
                value = value[0]
            if isinstance(value, str | int) and not isinstance(value, bool):
                text = str(value).strip()
                if text and not text.startswith("["):  # not a redaction/truncation marker
                    return text[:150]
    return ""


def _session_hash(request: Any) -> str:
    session = getattr(django_request(request), "session", None)
    key = getattr(session, "session_key", None) if session is not None else None
    return integrity.hash_session_key(key) if key else ""


class ActivityTracker:
    """Build events from requests and hand them off; see the module docstring."""

    def build_event(
        self,
        request: Any,
        response: Any = None,
        *,
        activity_type: str,
        started: float,
        exception: BaseException | None = None,
        user: Any = _UNSET,
        view: Any = None,
    ) -> Event:
        """``started`` is a ``time.perf_counter()`` value taken before the view ran."""
        duration = max((time.perf_counter() - started) * 1000.0, 0.0)
        if user is _UNSET:
            user = user_of(request, response, view)
        req = django_request(request)
        address = client_address(req)
        status: int | None
        if exception is not None:
            status = exception_status(exception)
        else:
            status = getattr(response, "status_code", None)
        username = ""
        user_id = None
        if user is not None:
            user_id = user.pk
            try:
                username = user.get_username()
            except AttributeError:
                username = str(getattr(user, "username", ""))
        params = params_of(request)
        if user is None and str(activity_type) == "AUTH":
            # Only login-type views: elsewhere a body's "user"/"email" may name someone else.
            username = claimed_username(params)
        # A password checked where authenticate() ran leaves only its verdict on the request.
        breached = getattr(req, breach.REQUEST_ATTRIBUTE, None) is True
        event = Event(
            type=str(activity_type),
            timestamp=datetime.now(UTC) - timedelta(milliseconds=duration),
            user_id=user_id,
            username=username[:150],
            session_id=_session_hash(request),
            ip_address=address.ip,
            remote_addr=address.remote_addr,
            forwarded_for=address.forwarded_for,
            user_agent=truncate_user_agent(req.META.get("HTTP_USER_AGENT", "")),
            endpoint=req.path[:512],
            method=(req.method or "")[:10].upper(),
            status=status,
            duration=round(duration, 3),
            headers=headers_of(req),
            params=params,
            verdict={"tags": [breach.TAG]} if breached else {},
        )
        # A request refused by a block is recorded as refused (outcome, 403, tag "blocked").
        mark_event(req, event)
        return event

    def record(self, event: Event, *, async_log: bool = False) -> None:
        """Hand one event off. Never raises for storage problems: the spool keeps it."""
        if async_log:
            handoff.submit(event)
        else:
            # A live event's id was made for it: no lookup of stored ids (see ``ingest``).
            handoff.write_now([event], assume_new=True)

    def record_many(
        self, events: Iterable[Event], *, batch_size: int | None = None, detect: bool = True
    ) -> IngestResult:
        """Synchronously store many events (imports), in batches; returns the summed result.
        ``detect=False``: profiles learn, no new verdict is made (see ``ingest``)."""
        size = int(batch_size or tracking_settings.BATCH_SIZE)
        total = IngestResult()
        batch: list[Event] = []
        for event in events:
            batch.append(event)
            if len(batch) >= size:
                total.add(handoff.store(batch, source="import", detect=detect))
                batch = []
        if batch:
            total.add(handoff.store(batch, source="import", detect=detect))
        return total


_default = ActivityTracker()


def get_tracker() -> ActivityTracker:
    return _default


def finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
