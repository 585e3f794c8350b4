"""Dashboard URLs, included by ``tracking.urls`` under ``dashboard/``."""

from django.urls import path

from tracking.dashboard import networks, views

app_name = "dashboard"

urlpatterns = [
    path("", views.index, name="index"),
    path("activity/<str:pk>/", views.activity, name="activity"),
    path("feed/", views.feed_view, name="feed"),
    path("charts/", views.charts_view, name="charts"),
    path("networks/", networks.networks, name="networks"),
    path("networks/<int:pk>/revoke/", networks.revoke, name="network-revoke"),
]
