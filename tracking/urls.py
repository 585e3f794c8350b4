"""URLs of the app, mounted by the project under ``api/tracking/``."""

from django.urls import include, path

from .health import health_view

app_name = "tracking"

urlpatterns: list = [
    path("dashboard/", include("tracking.dashboard.urls")),
    path("health/", health_view, name="health"),
]
