"""API throttles with the seed's scopes, ``burst`` and ``sustained``.

Rates come from ``REST_FRAMEWORK['DEFAULT_THROTTLE_RATES']`` when the project sets them,
otherwise from ``TRACKING_THROTTLE_RATES`` (defaults 60/min and 1000/hour), read at request
time: DRF's own lookup happens once at import and raises ``ImproperlyConfigured`` for a
scope without a rate.

Clients without a user are identified by the trusted-proxy client IP that recording uses
(``tracking.capture.clientip``), not by DRF's ``get_ident`` which believes any ``X-Forwarded-For``
when ``NUM_PROXIES`` is unset: a client rotating forged values would get a fresh bucket on
every request.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rest_framework.exceptions import APIException
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle, UserRateThrottle

from tracking.capture.clientip import client_ip
from tracking.conf import DEFAULTS, tracking_settings


def client_ident(request: Any) -> str:
    """The client address behind trusted proxies (falls back to the socket peer)."""
    try:
        ip = client_ip(request)
    except Exception:  # a misconfigured proxy list must not open the throttle
        ip = None
    return ip or request.META.get("REMOTE_ADDR", "") or "unknown"


class TrackingRateThrottle(UserRateThrottle):
    """A ``UserRateThrottle`` with the app's rate lookup and client identification."""

    def get_rate(self) -> str | None:
        for rates in (
            api_settings.DEFAULT_THROTTLE_RATES or {},
            self.THROTTLE_RATES or {},
            tracking_settings.THROTTLE_RATES or {},
            DEFAULTS["THROTTLE_RATES"],
        ):
            rate = rates.get(self.scope or "")
            if rate:
                return str(rate)
        return None

    def get_ident(self, request: Any) -> str:
        return client_ident(request)

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        user = request.user
        if user and user.is_authenticated:
            # The account's creation time guards against a reused primary key inheriting
            # another account's history.
            joined = getattr(user, "date_joined", None)
            ident = f"{user.pk}:{joined.timestamp() if joined else ''}"
        else:
            ident = self.get_ident(request)
        return self.cache_format % {"scope": self.scope, "ident": ident}


class BurstRateThrottle(TrackingRateThrottle):
    scope = "burst"


class SustainedRateThrottle(TrackingRateThrottle):
    scope = "sustained"


def throttle_wait(request: Any) -> float | None:
    """For plain Django views: count ``request`` against the ``burst`` and ``sustained``
    scopes; the seconds to wait when it is over a rate, else None."""
    waits = []
    for throttle_class in (BurstRateThrottle, SustainedRateThrottle):
        throttle = throttle_class()
        # These throttles never read the view; a plain Django view has no APIView to pass.
        if not throttle.allow_request(request, None):  # type: ignore[arg-type]
            waits.append(throttle.wait() or 1.0)
    return max(waits) if waits else None


def retry_after(wait: float) -> str:
    return str(max(1, int(wait + 0.999)))


class ThrottleFirstMixin:
    """For DRF views: every caller is throttled right after authentication, *before* the
    permission check (DRF throttles after it), so refusals are rate limited too: token
    guessing, signed-in users without access probing the API. Throttled once per request."""

    throttle_classes: Sequence[type[BaseThrottle]] = (BurstRateThrottle, SustainedRateThrottle)

    def perform_authentication(self, request: Any) -> None:
        try:
            request.user  # noqa: B018 - authenticates
        except APIException:
            self._throttle_once(request)
            raise
        self._throttle_once(request)

    def _throttle_once(self, request: Any) -> None:
        if not getattr(request, "_tracking_throttled", False):
            request._tracking_throttled = True
            super().check_throttles(request)  # type: ignore[misc]  # mixed into an APIView

    def check_throttles(self, request: Any) -> None:
        self._throttle_once(request)
