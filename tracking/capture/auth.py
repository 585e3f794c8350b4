"""Django's auth signals as ``AUTH`` activities (``TRACKING_AUTH_SIGNALS``, default on).

``user_logged_in``, ``user_login_failed`` and ``user_logged_out`` are sent by every login path
that goes through ``django.contrib.auth``: ``LoginView``, the admin login, DRF's
``obtain_auth_token``, django-allauth, any ``authenticate()``/``login()``/``logout()`` call.
On a request that ``@track`` or the ``TrackingMiddleware`` records, the signal only adds its
outcome, user and claimed username to that one activity (``tracking.capture.context``);
otherwise the receiver records it, with the full request context when there is a request
(the one passed, or the one being served), and with what the signal knows when there is none.

The receivers are connected in ``TrackingConfig.ready``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed

from tracking.capture.context import claim_of, current_request, set_user
from tracking.capture.tracker import get_tracker
from tracking.conf import tracking_settings
from tracking.events import Event
from tracking.outcome import FAILURE, SUCCESS
from tracking.pipeline import handoff

logger = logging.getLogger("tracking.recording")

DISPATCH_UID = "tracking.capture.auth"

# Credential keys that name the account, after the user model's USERNAME_FIELD.
_NAME_KEYS = ("username", "email", "login", "user")


def claimed_name(credentials: Any) -> str:
    """The account a failed ``authenticate()`` named (Django has already masked secrets)."""
    if not isinstance(credentials, dict):
        return ""
    field = get_user_model().USERNAME_FIELD
    for key in (field, *_NAME_KEYS):
        value = credentials.get(key)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
            return str(value).strip()[:150]
    return ""


def on_user_logged_in(sender: Any, request: Any = None, user: Any = None, **kwargs: Any) -> None:
    _signal(request, outcome=SUCCESS, auth_event="login", user=user)


def on_user_logged_out(sender: Any, request: Any = None, user: Any = None, **kwargs: Any) -> None:
    _signal(request, outcome=SUCCESS, auth_event="logout", user=user)


def on_user_login_failed(
    sender: Any, credentials: Any = None, request: Any = None, **kwargs: Any
) -> None:
    _signal(request, outcome=FAILURE, auth_event="login_failed", username=claimed_name(credentials))


def _signal(request: Any, *, outcome: str, auth_event: str, user: Any = None, username: str = ""):
    if not tracking_settings.AUTH_SIGNALS:
        return
    try:
        if request is None:
            request = current_request()
        claim = claim_of(request)
        if claim is not None:
            # Recorded once, by whoever claimed the request, with these facts.
            claim.merge(outcome=outcome, auth_event=auth_event, user=user, username=username)
            return
        event = _event(request, auth_event=auth_event, user=user, username=username)
        event.outcome = outcome
        get_tracker().record(event)
    except Exception:  # a login must never fail because its log line did
        handoff.count("record_errors")
        logger.exception("tracking: could not record an auth signal")


def _event(request: Any, *, auth_event: str, user: Any, username: str) -> Event:
    if request is None or not hasattr(getattr(request, "_request", request), "META"):
        event = Event(type="AUTH", params={"auth_event": auth_event})
        if user is not None:
            set_user(event, user)
        else:
            event.username = username
        return event
    event = get_tracker().build_event(
        request,
        None,
        activity_type="AUTH",
        started=time.perf_counter(),
        user=user if user is not None and getattr(user, "pk", None) is not None else None,
    )
    if username and event.user_id is None:
        event.username = username
    event.params = {**(event.params or {}), "auth_event": auth_event}
    return event


def connect() -> None:
    user_logged_in.connect(on_user_logged_in, dispatch_uid=DISPATCH_UID + ".in")
    user_logged_out.connect(on_user_logged_out, dispatch_uid=DISPATCH_UID + ".out")
    user_login_failed.connect(on_user_login_failed, dispatch_uid=DISPATCH_UID + ".failed")
