"""``tracking.middleware.TrackingMiddleware``: coverage without decorators.

Add it after ``AuthenticationMiddleware``::

    MIDDLEWARE = [..., "django.contrib.auth.middleware.AuthenticationMiddleware",
                  ..., "tracking.middleware.TrackingMiddleware"]

It records the requests ``TRACKING_PATHS`` matches (``tracking.capture.paths``) as one
activity each, and binds every request to the context (``tracking.capture.context``) so auth
signals and account changes made while it is served name the client and the acting user.
Works in sync and async stacks.
"""

from __future__ import annotations

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async

from tracking.capture import context, paths


class TrackingMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.is_async:
            return self.__acall__(request)
        with context.bound(request):
            pending = paths.begin(request)
            response = self.get_response(request)
            self.record(request, pending, response)
        return response

    async def __acall__(self, request):
        with context.bound(request):
            pending = paths.begin(request)
            response = await self.get_response(request)
            await self.arecord(request, pending, response)
        return response

    # -- recording ------------------------------------------------------------------------
    def record(self, request, pending, response) -> None:
        if paths.still_mine(request, pending):
            paths.finish(request, pending, response)

    async def arecord(self, request, pending, response) -> None:
        if not paths.still_mine(request, pending):
            return
        if pending.entry.async_log:
            # Reading the user may query the session: done off the event loop; building and
            # queueing the event touch no database.
            user = await request.auser() if hasattr(request, "auser") else None
            paths.finish(request, pending, response, user=_authenticated(user))
        else:
            await sync_to_async(paths.finish)(request, pending, response)


def _authenticated(user):
    return user if getattr(user, "is_authenticated", False) else None
