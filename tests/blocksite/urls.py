from django.contrib import admin
from django.contrib.auth import authenticate
from django.contrib.auth.views import LoginView
from django.http import JsonResponse
from django.urls import include, path
from rest_framework.authtoken.views import obtain_auth_token

import tracking
from tracking.capture.decorators import track


def step_up(request):
    """Checks the password, then asks for the verdict (a real view would demand a second
    factor when the risk is high)."""
    user = authenticate(
        request, username=request.POST.get("username"), password=request.POST.get("password")
    )
    if user is None:
        verdict = tracking.assess(request, outcome="failure")
    else:
        verdict = tracking.assess(request, user=user)
    return JsonResponse(
        {
            "risk": verdict.risk,
            "tags": list(verdict.tags),
            "blocked": verdict.blocked,
            "findings": [f.detector for f in verdict.findings],
        }
    )


urlpatterns = [
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    path("api/token/", obtain_auth_token),
    path("api/tracking/", include("tracking.urls")),
    path("tracked/login/", track(activity_type="AUTH")(LoginView.as_view())),
    path("step-up/", step_up),
]
