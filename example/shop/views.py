"""The shop's pages, recorded by ``@track`` with the activity type a security team expects;
login and logout are Django's own, recorded by the ``TrackingMiddleware`` and auth signals.

Views answer HTML forms and JSON bodies alike (``Content-Type: application/json``), so the
same endpoints serve browsers, scripts and the demo's curl examples.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import uuid
from decimal import Decimal, InvalidOperation

from django.contrib.auth import authenticate, login, logout, update_session_auth_hash
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import PasswordChangeForm
from django.contrib.auth.views import LoginView
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_http_methods, require_POST

import tracking
from tracking.capture.decorators import track

# Risk from which a payment needs the password again (step-up); blocked sources never pay.
STEP_UP_RISK = 0.5

REPORTS = {"orders", "customers", "invoices", "inventory", "payouts", "usage"}
CURRENCIES = {"EUR", "GBP", "USD", "JPY", "AUD", "BRL", "NGN", "RUB", "UAH", "IDR"}


def _wants_json(request: HttpRequest) -> bool:
    return request.content_type == "application/json" or "application/json" in request.headers.get(
        "Accept", ""
    )


def _data(request: HttpRequest) -> dict:
    """Form fields or a JSON object body (anything else is an empty dict)."""
    if request.content_type == "application/json":
        try:
            data = json.loads(request.body or b"{}")
        except (ValueError, UnicodeDecodeError):
            return {}
        return data if isinstance(data, dict) else {}
    return request.POST.dict()


def json_or_csrf(view):
    """CSRF-protect form posts; JSON bodies are exempt (scripts and the curl examples).

    A cross-site page cannot send ``Content-Type: application/json`` without a CORS
    preflight this site never grants, so JSON requests cannot be forged by a browser.
    """
    protected = csrf_protect(view)

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs):
        if request.content_type == "application/json":
            return view(request, *args, **kwargs)
        return protected(request, *args, **kwargs)

    return csrf_exempt(wrapper)


def home(request: HttpRequest) -> HttpResponse:
    return render(request, "shop/home.html")


# Django's own login page: the TrackingMiddleware (TRACKING_PATHS) records each POST and the
# auth signals give it its outcome; a wrong password is answered 200 with a form error.
_form_login = LoginView.as_view(template_name="shop/login.html")


@json_or_csrf
@require_http_methods(["GET", "POST"])
def login_view(request: HttpRequest) -> HttpResponse:
    """Django's ``LoginView`` for browsers; a JSON body gets the JSON login (scripts, curl)."""
    if request.method == "POST" and request.content_type == "application/json":
        return json_login(request)
    return _form_login(request)


def json_login(request: HttpRequest) -> JsonResponse:
    """Username/password login for JSON clients; 401 on bad credentials."""
    data = _data(request)
    user = authenticate(
        request, username=str(data.get("username", "")), password=str(data.get("password", ""))
    )
    if user is None:
        return JsonResponse({"detail": "invalid username or password"}, status=401)
    login(request, user)
    return JsonResponse({"ok": True, "username": user.get_username()})


@json_or_csrf
@require_POST
def logout_view(request: HttpRequest) -> HttpResponse:
    logout(request)
    return JsonResponse({"ok": True}) if _wants_json(request) else redirect("/")


@track(activity_type="PAYMENT", async_log=True)
@json_or_csrf
@login_required
@require_http_methods(["GET", "POST"])
def payment_view(request: HttpRequest) -> HttpResponse:
    """A fake card payment. Recorded off the request path (``async_log=True``)."""
    if request.method == "GET":
        return render(request, "shop/payment.html")
    data = _data(request)
    try:
        amount = Decimal(str(data.get("amount", "")))
    except InvalidOperation:
        amount = Decimal(0)
    currency = str(data.get("currency", "EUR")).upper()
    if not (Decimal("0.01") <= amount <= Decimal("100000")) or currency not in CURRENCIES:
        return JsonResponse({"detail": "amount (0.01-100000) and currency required"}, status=400)
    refusal = _step_up(request, data)
    if refusal is not None:
        return refusal
    payment = {"id": str(uuid.uuid4()), "status": "paid", "amount": f"{amount:.2f}",
               "currency": currency}  # fmt: skip
    if _wants_json(request):
        return JsonResponse(payment)
    return render(request, "shop/payment.html", {"payment": payment})


def _step_up(request: HttpRequest, data: dict) -> HttpResponse | None:
    """Ask detection about this payment before making it (``tracking.assess``): a risky one
    needs the account's password again, a blocked source is refused. None: go ahead."""
    verdict = tracking.assess(request, activity_type="PAYMENT")
    if verdict.blocked:
        return JsonResponse({"detail": "refused"}, status=403)
    if verdict.risk < STEP_UP_RISK:
        return None
    if request.user.check_password(str(data.get("confirm_password", ""))):
        return None
    reasons = [f.reason for f in verdict.findings]
    if _wants_json(request):
        return JsonResponse(
            {"detail": "confirm your password", "step_up": True, "reasons": reasons}, status=403
        )
    return render(request, "shop/payment.html", {"step_up": True, "reasons": reasons}, status=403)


@track(activity_type="ACCOUNT")
@json_or_csrf
@login_required
@require_http_methods(["GET", "POST"])
def password_change_view(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return render(request, "shop/password.html", {"form": PasswordChangeForm(request.user)})
    form = PasswordChangeForm(request.user, _data(request))
    if not form.is_valid():
        if _wants_json(request):
            return JsonResponse({"errors": form.errors}, status=400)
        return render(request, "shop/password.html", {"form": form}, status=400)
    form.save()
    update_session_auth_hash(request, form.user)
    if _wants_json(request):
        return JsonResponse({"ok": True})
    return render(request, "shop/password.html", {"form": None, "done": True})


@track(activity_type="DATA")
@login_required
def report_export_view(request: HttpRequest, name: str) -> HttpResponse:
    """A CSV report download: what a bulk-export detector watches."""
    if name not in REPORTS:
        return HttpResponse("unknown report", status=404, content_type="text/plain")
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["row", "report", "owner"])
    for i in range(1, 101):
        writer.writerow([i, name, request.user.get_username()])
    response = HttpResponse(buf.getvalue(), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="{name}.csv"'
    return response
