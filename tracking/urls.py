"""URLs of the app, mounted by the project under ``api/tracking/``.

Append your own ``path(...)`` lines to ``urlpatterns``; keep ``activities/export/`` before
the ``<uuid:pk>`` routes (the converter would not match it anyway, but order documents it).
"""

from django.urls import include, path

from tracking.api import blocks, views
from tracking.health import health_view

app_name = "tracking"

urlpatterns: list = [
    path("activities/", views.ActivityListView.as_view(), name="activity-list"),
    path("activities/export/", views.ExportView.as_view(), name="activity-export"),
    path("activities/<uuid:pk>/", views.ActivityDetailView.as_view(), name="activity-detail"),
    path(
        "activities/<uuid:pk>/delete/", views.ActivityDeleteView.as_view(), name="activity-delete"
    ),
    path("activities/<uuid:pk>/flag/", views.ActivityFlagView.as_view(), name="activity-flag"),
    path("stats/", views.StatsView.as_view(), name="stats"),
    path("blocks/", blocks.BlockListView.as_view(), name="block-list"),
    path("blocks/<int:pk>/", blocks.BlockDetailView.as_view(), name="block-detail"),
    path("blocks/<int:pk>/lift/", blocks.BlockLiftView.as_view(), name="block-lift"),
    path("dashboard/", include("tracking.dashboard.urls")),
    path("health/", health_view, name="health"),
]

try:  # the OpenAPI schema and its docs page, when drf-spectacular is installed
    from drf_spectacular.views import SpectacularRedocView, SpectacularSwaggerView
except ImportError:  # optional extra "docs"
    pass
else:
    from django.apps import apps

    from tracking.api.schema import docs_page_view, schema_view

    # Public by default; TRACKING_API_DOCS_STAFF_ONLY makes schema and pages staff-only.
    urlpatterns += [path("schema/", schema_view(urlpatterns), name="schema")]
    if apps.is_installed("drf_spectacular"):  # the pages' templates come with the app
        urlpatterns += [
            path("docs/", docs_page_view(SpectacularSwaggerView), name="docs"),
            path("redoc/", docs_page_view(SpectacularRedocView), name="redoc"),
        ]
