"""A plain Django site, as a new user builds one: ``django.contrib.auth.urls`` (``LoginView``),
the admin and DRF's ``obtain_auth_token``, no view decorated (tests/test_auth_recording.py).
One extra path decorates Django's ``LoginView`` with ``@track`` for the no-double-record test."""

from django.contrib import admin
from django.contrib.auth.views import LoginView
from django.urls import include, path
from rest_framework.authtoken.views import obtain_auth_token

from tracking.capture.decorators import track

urlpatterns = [
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    path("api-token-auth/", obtain_auth_token),
    path("api/tracking/", include("tracking.urls")),
    path("tracked/login/", track(activity_type="AUTH")(LoginView.as_view())),
]
