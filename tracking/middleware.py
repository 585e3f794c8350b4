"""``tracking.middleware.TrackingMiddleware``: coverage without decorators, and enforcement.

Add it after ``AuthenticationMiddleware``::

    MIDDLEWARE = [..., "django.contrib.auth.middleware.AuthenticationMiddleware",
                  ..., "tracking.middleware.TrackingMiddleware"]

It records the requests ``TRACKING_PATHS`` matches (``tracking.capture.paths``) as one
activity each, and binds every request to the context (``tracking.capture.context``) so auth
signals and account changes made while it is served name the client and the acting user.
When ``TrackingBackend`` refused the request's source while the view ran, the view's answer (a
login form with an error, DRF's 400) is replaced by ``tracking.respond.enforce``'s 403 (HTML,
or JSON for JSON clients) before it is recorded, so the activity shows what the client got.
Works in sync and async stacks.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async

from tracking.capture import context, paths
from tracking.respond import enforce


class TrackingMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: Any) -> Any:
        if self.is_async:
            return self.__acall__(request)
        with context.bound(request):
            pending = paths.begin(request)
            response = enforce.answer(request, self.get_response(request))
            self.record(request, pending, response)
        return response

    async def __acall__(self, request: Any) -> Any:
        with context.bound(request):
            pending = paths.begin(request)
            response = enforce.answer(request, await self.get_response(request))
            await self.arecord(request, pending, response)
        return response

    # -- recording ------------------------------------------------------------------------
    def record(self, request: Any, pending: Any, response: Any) -> None:
        if paths.still_mine(request, pending):
            paths.finish(request, pending, response)

    async def arecord(self, request: Any, pending: Any, response: Any) -> None:
        if not paths.still_mine(request, pending):
            return
        if pending.entry.async_log:
            # Reading the user may query the session: done off the event loop; building and
            # queueing the event touch no database.
            user = await request.auser() if hasattr(request, "auser") else None
            paths.finish(request, pending, response, user=_authenticated(user))
        else:
            await sync_to_async(paths.finish)(request, pending, response)


def _authenticated(user: Any) -> Any:
    return user if getattr(user, "is_authenticated", False) else None
