"""A plain Django site, as a new user builds one: ``django.contrib.auth.urls`` (``LoginView``),
the admin and DRF's ``obtain_auth_token``, no view decorated (tests/test_auth_recording.py).
Two extra paths: Django's ``LoginView`` decorated with ``@track`` (no double records) and a
token view calling ``authenticate()`` without the request (older DRF versions)."""

from django.contrib import admin
from django.contrib.auth import authenticate
from django.contrib.auth.views import LoginView
from django.urls import include, path
from rest_framework.authtoken.views import obtain_auth_token
from rest_framework.decorators import api_view, authentication_classes, permission_classes
from rest_framework.response import Response

from tracking.capture.decorators import track


@api_view(["POST"])
@authentication_classes([])
@permission_classes([])
def legacy_token(request):
    """Like DRF versions whose token view calls ``authenticate()`` without ``request=``."""
    user = authenticate(
        username=request.data.get("username", ""), password=request.data.get("password", "")
    )
    return Response({"ok": user is not None}, status=200 if user else 400)


urlpatterns = [
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    path("api-token-auth/", obtain_auth_token),
    path("api/tracking/", include("tracking.urls")),
    path("tracked/login/", track(activity_type="AUTH")(LoginView.as_view())),
    path("legacy/token/", legacy_token),
]
