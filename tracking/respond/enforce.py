"""Refusing a request: who is asking, whether a block applies, and the 403 answer.

``TrackingBackend`` calls ``check(request, username)`` from ``authenticate()`` and marks the
request refused; ``TrackingMiddleware`` then answers it with ``refusal_response`` (403 HTML,
or JSON for JSON clients) whatever the view rendered (a login form's error page, DRF's 400).
The recorded event of a refused request carries ``outcome=failure``, status 403 and the tag
``blocked`` (``tracking.capture.marks``). The answer never says which block applies or until when.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.utils.translation import gettext_lazy as _

from tracking.capture.clientip import client_address
from tracking.capture.marks import BLOCKED_TAG, mark_event, mark_refused, refusal_of
from tracking.capture.request import django_request
from tracking.models import Block
from tracking.respond import blocks

__all__ = [
    "BLOCKED_TAG",
    "answer",
    "check",
    "client_ip",
    "mark_event",
    "mark_refused",
    "refusal_of",
    "refusal_response",
    "wants_json",
]

MESSAGE = _("This sign-in attempt was refused. Try again later or contact the site's support.")


def client_ip(request: Any) -> str | None:
    """The client address through the trusted-proxy rule (``TRACKING_TRUSTED_PROXIES``)."""
    if request is None:
        return None
    return client_address(django_request(request)).ip


def check(request: Any, username: str = "", user_id: Any = None) -> Block | None:
    """The block refusing this request's source for ``username`` (None: go ahead)."""
    return blocks.find_block(client_ip(request), username, user_id)


def wants_json(request: Any, response: Any = None) -> bool:
    """JSON for API clients: a JSON answer was being sent, or the request is JSON."""
    req = django_request(request)
    if response is not None and "json" in str(response.get("Content-Type", "")).lower():
        return True
    if "json" in req.META.get("CONTENT_TYPE", "").lower():
        return True
    accept = req.META.get("HTTP_ACCEPT", "").lower()
    if "json" not in accept:
        return False
    html = accept.find("text/html")
    return html < 0 or accept.find("json") < html


def answer(request: Any, response: Any) -> Any:
    """What to send: the view's ``response``, or the 403 when ``authenticate()`` refused the
    request's source while the view ran."""
    if refusal_of(request) is None:
        return response
    return refusal_response(request, response)


def refusal_response(request: Any, response: Any = None) -> HttpResponse:
    """The 403 sent instead of the view's answer."""
    if wants_json(request, response):
        answer: HttpResponse = JsonResponse({"detail": str(MESSAGE), "code": "blocked"}, status=403)
    else:
        answer = HttpResponse(
            render_to_string("tracking/blocked.html", {"message": MESSAGE}, request=None),
            status=403,
            content_type="text/html; charset=utf-8",
        )
    answer["Cache-Control"] = "no-store"
    return answer
