"""The dashboard's Content-Security-Policy and companion headers.

The pages load only same-origin JS/CSS (no inline code, no CDN), so the policy can forbid
everything else; a stored XSS payload in an audited field then cannot run even if escaping
were ever missed.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.http import HttpRequest, HttpResponse

POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)

HEADERS = {
    "Content-Security-Policy": POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    # Audit data must not linger in shared caches or the back/forward cache of a kiosk.
    "Cache-Control": "no-store, private",
}


def apply_headers(response: HttpResponse) -> HttpResponse:
    for name, value in HEADERS.items():
        response[name] = value
    return response


def csp(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Set the policy on every response of ``view``, refusals and errors included."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        return apply_headers(view(request, *args, **kwargs))

    return wrapped
