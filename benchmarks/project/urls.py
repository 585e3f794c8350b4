from django.apps import apps
from django.urls import path

from . import views

urlpatterns = [
    path("plain/", views.plain),
    path("drf/", views.drf),
]
if apps.is_installed("tracking"):
    urlpatterns += [path(f"{name}/", view) for name, view in views.tracked_views().items()]
