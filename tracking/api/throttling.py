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

from typing import Any

from rest_framework.settings import api_settings
from rest_framework.throttling import UserRateThrottle

from tracking.conf import DEFAULTS, tracking_settings


def client_ident(request: Any) -> str:
    """The client address behind trusted proxies (falls back to the socket peer)."""
    try:
        from tracking.capture.clientip import client_ip
    except ImportError:
        client_ip = None  # type: ignore[assignment]  # clientip is optional here
    if client_ip is not None:
        try:
            address = client_ip(getattr(request, "_request", request))
        except Exception:  # a misconfigured proxy list must not open the throttle
            address = None
        ip = getattr(address, "ip", address)
        if ip:
            return str(ip)
    return request.META.get("REMOTE_ADDR", "") or "unknown"


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
