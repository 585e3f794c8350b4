"""URLs of the app, mounted by the project under ``api/tracking/``."""

from django.urls import include, path

app_name = "tracking"

urlpatterns: list = [
    path("dashboard/", include("tracking.dashboard.urls")),
]
