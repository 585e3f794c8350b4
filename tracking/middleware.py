"""``TrackingMiddleware``: answers a request refused by ``TrackingBackend`` with 403.

Enforcement runs first in ``__call__``: the view runs, and if ``authenticate()`` refused
the request's source meanwhile, the view's answer (a login form with an error, DRF's 400) is
replaced by ``tracking.respond.enforce.refusal_response`` (403 HTML, or JSON for JSON
clients). Works in synchronous and asynchronous stacks.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction

from tracking.respond import enforce


class TrackingMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: Any) -> Any:
        if iscoroutinefunction(self):
            return self.__acall__(request)
        return enforce.answer(request, self.get_response(request))

    async def __acall__(self, request: Any) -> Any:
        return enforce.answer(request, await self.get_response(request))
