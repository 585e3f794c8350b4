"""Request-local state shared by the three recorders of a request: ``@track``, the
``TrackingMiddleware`` and the auth-signal receivers.

One request gives one activity. Whoever records the request (``@track`` when the view is
decorated, else the middleware when ``TRACKING_PATHS`` matches) *claims* it before the view
runs; an auth signal fired meanwhile (``LoginView``, the admin login, DRF's token view,
``authenticate()``/``login()``/``logout()``) then only adds what it knows to the claim (the
outcome, the claimed username, the user) instead of recording a second activity. A signal on
a request nobody claimed is recorded by its receiver.

The request being served is also bound to a context variable (``current_request``), so code
that runs without it in hand (a model's ``post_save``, DRF versions calling ``authenticate()``
without ``request=``) can still name the acting user and the client.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from tracking.capture.request import django_request
from tracking.events import Event
from tracking.outcome import FAILURE, clean, from_status

logger = logging.getLogger("tracking.recording")

_ATTRIBUTE = "_tracking_claim"
_current: ContextVar[Any] = ContextVar("tracking_current_request", default=None)

TRACK = "track"
MIDDLEWARE = "middleware"


@dataclass(slots=True)
class Claim:
    """Who records this request, and what auth signals said about it."""

    owner: str
    outcome: str = ""
    username: str = ""  # the account a failed login named
    user: Any = None  # the user a login/logout named
    auth_event: str = ""  # "login", "logout" or "login_failed"

    def merge(self, *, outcome: str, auth_event: str, user: Any = None, username: str = "") -> None:
        """Add an auth signal's facts; the last signal of the request decides the outcome."""
        self.outcome = outcome
        self.auth_event = auth_event
        if user is not None:
            self.user = user
        if username:
            self.username = username


def claim(request: Any, owner: str) -> Claim | None:
    """Make ``owner`` the recorder of ``request``; None when an outer ``@track`` already is
    (a view decorated twice records once). ``@track`` takes a request over from the
    middleware: its activity type is the view's own."""
    req = django_request(request)
    current = getattr(req, _ATTRIBUTE, None)
    if current is not None and current.owner == TRACK:
        return None
    new = Claim(owner=owner)
    if current is not None:
        new.outcome, new.username, new.user, new.auth_event = (
            current.outcome,
            current.username,
            current.user,
            current.auth_event,
        )
    try:
        setattr(req, _ATTRIBUTE, new)
    except AttributeError:  # a request object that takes no attributes is not claimed
        return None
    return new


def claim_of(request: Any) -> Claim | None:
    if request is None:
        return None
    return getattr(django_request(request), _ATTRIBUTE, None)


def current_request() -> Any:
    """The request being served in this context (bound by the middleware or ``@track``)."""
    return _current.get()


@contextmanager
def bound(request: Any) -> Iterator[None]:
    token = _current.set(django_request(request))
    try:
        yield
    finally:
        _current.reset(token)


def complete(
    event: Event,
    claim_: Claim | None,
    *,
    request: Any = None,
    response: Any = None,
    outcome: Any = None,
) -> Event:
    """Give ``event`` its outcome and what the request's auth signals said.

    Outcome: an auth signal's, else the ``outcome(request, response)`` callable's, else, for
    an AUTH activity, a login form shown again with errors is a failure, else the status
    (>= 400 is a failure)."""
    decided = claim_.outcome if claim_ is not None else ""
    if not decided and outcome is not None and response is not None:
        try:
            decided = clean(outcome(request, response))
        except Exception:  # a broken callable must not lose the activity
            logger.exception("tracking: the outcome callable failed; the status decides")
            decided = ""
    if not decided and event.type == "AUTH" and _form_refused(response):
        decided = FAILURE
    event.outcome = decided or from_status(event.status)
    if claim_ is None:
        return event
    if claim_.user is not None and event.user_id is None:
        set_user(event, claim_.user)
    if claim_.username and not event.username and event.user_id is None:
        event.username = claim_.username[:150]
    if claim_.auth_event:
        event.params = {**(event.params or {}), "auth_event": claim_.auth_event}
    return event


def _form_refused(response: Any) -> bool:
    """Whether the view answered by showing its form again with errors. Django's admin
    refuses the right password of a non-staff account this way (200, no auth signal: the
    credentials were valid), and so does any ``LoginView`` whose form refuses a user."""
    data = getattr(response, "context_data", None)
    form = data.get("form") if isinstance(data, dict) else None
    if form is None or not getattr(form, "is_bound", False):
        return False
    try:
        return bool(form.errors)
    except Exception:  # a custom form that cannot validate twice: the status decides
        return False


def set_user(event: Event, user: Any) -> None:
    event.user_id = user.pk
    try:
        event.username = str(user.get_username())[:150]
    except AttributeError:
        event.username = str(getattr(user, "username", ""))[:150]
