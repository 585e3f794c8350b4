"""Who may see the dashboard: active staff holding ``tracking.view_activity``.

Anonymous visitors are sent to the admin login (the dashboard is reached from the admin);
signed-in users without the rights get a 403, never a redirect loop. Refusals count against
the API's throttle rates (a 429 once over them); staff polling the page are not throttled
here.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import NoReverseMatch, reverse
from django.utils.translation import gettext as _

from tracking.api.throttling import retry_after, throttle_wait
from tracking.dashboard.csp import apply_headers

PERMISSION = "tracking.view_activity"


def can_view(user) -> bool:
    return bool(user.is_active and user.is_staff and user.has_perm(PERMISSION))


def _login_url() -> str:
    try:
        return reverse("admin:login")
    except NoReverseMatch:
        return str(settings.LOGIN_URL)


def _throttled_refusal(request: HttpRequest) -> HttpResponse | None:
    wait = throttle_wait(request)
    if wait is None:
        return None
    response = JsonResponse({"detail": _("Request was throttled.")}, status=429)
    response["Retry-After"] = retry_after(wait)
    return apply_headers(response)


def staff_page(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """HTML views: anonymous → admin login, signed in without rights → 403 page."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        user = request.user
        if not can_view(user) and (throttled := _throttled_refusal(request)):
            return throttled
        if not user.is_authenticated:
            return apply_headers(redirect_to_login(request.get_full_path(), _login_url()))
        if not can_view(user):
            response = render(request, "tracking/dashboard/403.html", status=403)
            return apply_headers(response)
        return apply_headers(view(request, *args, **kwargs))

    return wrapped


def staff_json(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """JSON views polled by the page: a refusal is a JSON 403, not a login page."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        user = request.user
        if not can_view(user) and (throttled := _throttled_refusal(request)):
            return throttled
        if not user.is_authenticated:
            return apply_headers(
                JsonResponse(
                    {"detail": _("Authentication credentials were not provided.")}, status=403
                )
            )
        if not can_view(user):
            return apply_headers(
                JsonResponse(
                    {"detail": _("You do not have permission to view activities.")}, status=403
                )
            )
        return apply_headers(view(request, *args, **kwargs))

    return wrapped
