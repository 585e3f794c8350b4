"""URLs of the app, mounted by the project under ``api/tracking/``."""

from django.urls import path

app_name = "tracking"

urlpatterns: list = []
