"""``@track(activity_type=..., async_log=False, outcome=None)``: record every call of a view.

Works on function views, ``async def`` views, class-based views (decorate the class, its
``dispatch``, or use ``method_decorator``), DRF ``APIView``/viewsets (decorate the class) and
``@api_view`` functions (either order). The user is read *after* the view ran, from DRF's
request when there is one, so token/JWT users are recorded. An exception is recorded (404,
403, 400 for Django's own exceptions, else 500) and re-raised unchanged. Recording never
breaks the view: its own failures are logged and counted.

The decorated view's request is claimed (``tracking.capture.context``): auth signals sent
while it runs and the ``TrackingMiddleware`` add to its one activity instead of recording
their own. The outcome is the auth signal's, else ``outcome(request, response)``'s (a
callable returning ``"success"``, ``"failure"``, ``""`` or a bool), else the status's.
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async

from tracking.capture.context import TRACK, Claim, bound, claim, complete
from tracking.capture.request import prepare
from tracking.capture.tracker import _UNSET, get_tracker, user_of
from tracking.pipeline import handoff

logger = logging.getLogger("tracking.recording")


def _find_request(args: tuple) -> tuple[Any, Any]:
    """(request, view instance or None) from a view's positional arguments."""
    for i, arg in enumerate(args[:2]):
        if hasattr(arg, "META") or hasattr(arg, "_request"):
            view = args[0] if i == 1 else None
            return arg, view
    return None, None


def _record(request, response, exc, started, opts, view, mine: Claim, user=_UNSET) -> None:
    tracker = get_tracker()
    try:
        event = tracker.build_event(
            request,
            response,
            activity_type=opts["activity_type"],
            started=started,
            exception=exc,
            user=user,
            view=view,
        )
        complete(event, mine, request=request, response=response, outcome=opts["outcome"])
        tracker.record(event, async_log=opts["async_log"])
    except Exception:  # the view's response matters more than its log line
        handoff.count("record_errors")
        logger.exception("tracking: could not record an activity")


def _wrap_function(view_func, opts):
    if iscoroutinefunction(view_func):

        @functools.wraps(view_func)
        async def async_wrapper(*args, **kwargs):
            request, view = _find_request(args)
            mine = claim(request, TRACK) if request is not None else None
            if mine is None:
                return await view_func(*args, **kwargs)
            started = time.perf_counter()
            with bound(request):
                try:
                    response = await view_func(*args, **kwargs)
                except Exception as exc:
                    await _arecord(request, None, exc, started, opts, view, mine)
                    raise
                await _arecord(request, response, None, started, opts, view, mine)
            return response

        return async_wrapper

    @functools.wraps(view_func)
    def wrapper(*args, **kwargs):
        request, view = _find_request(args)
        mine = claim(request, TRACK) if request is not None else None
        if mine is None:
            return view_func(*args, **kwargs)
        started = time.perf_counter()
        prepare(request)
        with bound(request):
            try:
                response = view_func(*args, **kwargs)
            except Exception as exc:
                _record(request, None, exc, started, opts, view, mine)
                raise
            if inspect.isawaitable(response):  # a sync dispatch handing back an async handler
                return _await_then_record(response, request, started, opts, view, mine)
            _record(request, response, None, started, opts, view, mine)
        return response

    return wrapper


async def _await_then_record(awaitable, request, started, opts, view, mine):
    with bound(request):
        try:
            response = await awaitable
        except Exception as exc:
            await _arecord(request, None, exc, started, opts, view, mine)
            raise
        await _arecord(request, response, None, started, opts, view, mine)
    return response


async def _auser(request, response, view):
    """The user in async code without touching the database from the event loop."""
    ctx = getattr(response, "renderer_context", None)
    if isinstance(ctx, dict) and ctx.get("request") is not None:
        return await sync_to_async(user_of)(request, response, view)
    auser = getattr(request, "auser", None)
    if auser is not None:
        try:
            user = await auser()
        except Exception:
            return None
        return user if getattr(user, "is_authenticated", False) else None
    return await sync_to_async(user_of)(request, response, view)


async def _arecord(request, response, exc, started, opts, view, mine) -> None:
    try:
        user = await _auser(request, response, view)
    except Exception:
        user = None
    if opts["async_log"]:
        # Building the event and queueing it touch no database: stay on the event loop.
        _record(request, response, exc, started, opts, view, mine, user)
    else:
        await sync_to_async(_record)(request, response, exc, started, opts, view, mine, user)


def _wrap_class(cls, opts):
    original = cls.dispatch
    is_async = bool(getattr(cls, "view_is_async", False))

    if is_async:

        async def dispatch(self, request, *args, **kwargs):
            mine = claim(request, TRACK)
            if mine is None:
                response = original(self, request, *args, **kwargs)
                return (await response) if inspect.isawaitable(response) else response
            started = time.perf_counter()
            with bound(request):
                try:
                    response = original(self, request, *args, **kwargs)
                    if inspect.isawaitable(response):
                        response = await response
                except Exception as exc:
                    await _arecord(request, None, exc, started, opts, self, mine)
                    raise
                await _arecord(request, response, None, started, opts, self, mine)
            return response

        markcoroutinefunction(dispatch)
    else:

        def dispatch(self, request, *args, **kwargs):  # type: ignore[misc]  # the sync variant
            mine = claim(request, TRACK)
            if mine is None:
                return original(self, request, *args, **kwargs)
            started = time.perf_counter()
            prepare(request)
            with bound(request):
                try:
                    response = original(self, request, *args, **kwargs)
                except Exception as exc:
                    _record(request, None, exc, started, opts, self, mine)
                    raise
                _record(request, response, None, started, opts, self, mine)
            return response

    functools.update_wrapper(dispatch, original)
    cls.dispatch = dispatch
    return cls


def track(activity_type: Any = "OTHER", async_log: bool = False, outcome: Any = None):
    """Record every call of the decorated view as an activity of ``activity_type``.

    ``@track`` without arguments records type ``OTHER``. ``outcome``: an optional callable
    ``(request, response) -> "success" | "failure" | "" | bool`` deciding the outcome when no
    auth signal did (default: the status, >= 400 is a failure).
    """
    if callable(activity_type) and not isinstance(activity_type, str):  # used bare: @track
        return track()(activity_type)
    if outcome is not None and not callable(outcome):
        raise TypeError("track(outcome=...) takes a callable (request, response) -> outcome")
    opts = {"activity_type": str(activity_type), "async_log": bool(async_log), "outcome": outcome}

    def decorator(target):
        if inspect.isclass(target):
            return _wrap_class(target, opts)
        return _wrap_function(target, opts)

    return decorator
