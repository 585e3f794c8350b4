from django.apps import apps
from django.urls import path

from . import views

urlpatterns = [
    path("plain/", views.plain),
    path("drf/", views.drf),
    # One path per request (benchmarks/kill.py, verdict.py): the row is found by its endpoint.
    path("marked/<str:marker>/", views.marked),
]
if apps.is_installed("tracking"):
    urlpatterns += [path(f"{name}/", view) for name, view in views.tracked_views().items()]
