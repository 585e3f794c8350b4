"""``@track(activity_type=..., async_log=False)``: record every call of a view.

Works on function views, ``async def`` views, class-based views (decorate the class, its
``dispatch``, or use ``method_decorator``), DRF ``APIView``/viewsets (decorate the class) and
``@api_view`` functions (either order). The user is read *after* the view ran, from DRF's
request when there is one, so token/JWT users are recorded. An exception is recorded (404,
403, 400 for Django's own exceptions, else 500) and re-raised unchanged. Recording never
breaks the view: its own failures are logged and counted.
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async

from tracking.capture.request import prepare
from tracking.capture.tracker import _UNSET, get_tracker

logger = logging.getLogger("tracking.recording")


def _find_request(args: tuple) -> tuple[Any, Any]:
    """(request, view instance or None) from a view's positional arguments."""
    for i, arg in enumerate(args[:2]):
        if hasattr(arg, "META") or hasattr(arg, "_request"):
            view = args[0] if i == 1 else None
            return arg, view
    return None, None


def _record(request, response, exc, started, opts, view, user=_UNSET) -> None:
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
        tracker.record(event, async_log=opts["async_log"])
    except Exception:  # noqa: BLE001 - the view's response matters more than its log line
        from tracking.pipeline import handoff

        handoff.count("record_errors")
        logger.exception("tracking: could not record an activity")


def _wrap_function(view_func, opts):
    if iscoroutinefunction(view_func):

        @functools.wraps(view_func)
        async def async_wrapper(*args, **kwargs):
            request, view = _find_request(args)
            if request is None:
                return await view_func(*args, **kwargs)
            started = time.perf_counter()
            try:
                response = await view_func(*args, **kwargs)
            except Exception as exc:
                await _arecord(request, None, exc, started, opts, view)
                raise
            await _arecord(request, response, None, started, opts, view)
            return response

        return async_wrapper

    @functools.wraps(view_func)
    def wrapper(*args, **kwargs):
        request, view = _find_request(args)
        if request is None:
            return view_func(*args, **kwargs)
        started = time.perf_counter()
        prepare(request)
        try:
            response = view_func(*args, **kwargs)
        except Exception as exc:
            _record(request, None, exc, started, opts, view)
            raise
        if inspect.isawaitable(response):  # a sync dispatch handing back an async handler
            return _await_then_record(response, request, started, opts, view)
        _record(request, response, None, started, opts, view)
        return response

    return wrapper


async def _await_then_record(awaitable, request, started, opts, view):
    try:
        response = await awaitable
    except Exception as exc:
        await _arecord(request, None, exc, started, opts, view)
        raise
    await _arecord(request, response, None, started, opts, view)
    return response


async def _auser(request, response, view):
    """The user in async code without touching the database from the event loop."""
    from tracking.capture.tracker import user_of

    ctx = getattr(response, "renderer_context", None)
    if isinstance(ctx, dict) and ctx.get("request") is not None:
        return await sync_to_async(user_of)(request, response, view)
    auser = getattr(request, "auser", None)
    if auser is not None:
        try:
            user = await auser()
        except Exception:  # noqa: BLE001
            return None
        return user if getattr(user, "is_authenticated", False) else None
    return await sync_to_async(user_of)(request, response, view)


async def _arecord(request, response, exc, started, opts, view) -> None:
    try:
        user = await _auser(request, response, view)
    except Exception:  # noqa: BLE001
        user = None
    if opts["async_log"]:
        # Building the event and queueing it touch no database: stay on the event loop.
        _record(request, response, exc, started, opts, view, user)
    else:
        await sync_to_async(_record)(request, response, exc, started, opts, view, user)


def _wrap_class(cls, opts):
    original = cls.dispatch
    is_async = bool(getattr(cls, "view_is_async", False))

    if is_async:

        async def dispatch(self, request, *args, **kwargs):
            started = time.perf_counter()
            try:
                response = original(self, request, *args, **kwargs)
                if inspect.isawaitable(response):
                    response = await response
            except Exception as exc:
                await _arecord(request, None, exc, started, opts, self)
                raise
            await _arecord(request, response, None, started, opts, self)
            return response

        markcoroutinefunction(dispatch)
    else:

        def dispatch(self, request, *args, **kwargs):  # type: ignore[misc]  # the sync variant
            started = time.perf_counter()
            prepare(request)
            try:
                response = original(self, request, *args, **kwargs)
            except Exception as exc:
                _record(request, None, exc, started, opts, self)
                raise
            _record(request, response, None, started, opts, self)
            return response

    functools.update_wrapper(dispatch, original)
    cls.dispatch = dispatch
    return cls


def track(activity_type: Any = "OTHER", async_log: bool = False):
    """Record every call of the decorated view as an activity of ``activity_type``.

    ``@track`` without arguments records type ``OTHER``.
    """
    if callable(activity_type):  # used bare: @track
        return track()(activity_type)
    opts = {"activity_type": str(activity_type), "async_log": bool(async_log)}

    def decorator(target):
        if inspect.isclass(target):
            return _wrap_class(target, opts)
        return _wrap_function(target, opts)

    return decorator
