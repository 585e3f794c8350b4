"""OpenAPI documentation helpers; a no-op when drf-spectacular is not installed."""

from __future__ import annotations

from typing import Any

from django.urls import include, path

from tracking.api.filters import ActivityFilter
from tracking.api.permissions import DocsAccess
from tracking.api.throttling import ThrottleFirstMixin

try:
    from drf_spectacular.types import OpenApiTypes
    from drf_spectacular.utils import (
        OpenApiParameter,
        OpenApiResponse,
        extend_schema,
        extend_schema_field,
    )

    HAVE_SPECTACULAR = True
except ImportError:  # optional dependency (extra "docs")
    HAVE_SPECTACULAR = False
    # Stand-ins for the optional dependency: None, and decorators that change nothing.
    OpenApiParameter = OpenApiResponse = OpenApiTypes = None  # type: ignore[misc,assignment]

    def extend_schema(*args: Any, **kwargs: Any):  # type: ignore[misc]
        return lambda target: target

    def extend_schema_field(*args: Any, **kwargs: Any):  # type: ignore[misc]
        return lambda target: target


# Query parameter types for the filters (the FilterSet's custom fields are not inferable).
_TYPES = {
    "user": "str",
    "asn": "int",
    "status": "int",
    "duration_min": "number",
    "duration_max": "number",
    "since": "datetime",
    "until": "datetime",
    "flagged": "bool",
}


def filter_parameters() -> list:
    """One documented query parameter per filter of ``ActivityFilter``."""
    if not HAVE_SPECTACULAR:
        return []

    types = {
        "int": OpenApiTypes.INT,
        "number": OpenApiTypes.NUMBER,
        "datetime": OpenApiTypes.STR,
        "bool": OpenApiTypes.BOOL,
        "str": OpenApiTypes.STR,
    }
    params = []
    for name, flt in ActivityFilter.base_filters.items():
        kind = _TYPES.get(name, "str")
        enum = None
        if name in ("review_status", "severity", "outcome"):
            enum = [value for value, _ in flt.extra.get("choices", [])]
        params.append(
            OpenApiParameter(
                name=name,
                type=types[kind],
                location=OpenApiParameter.QUERY,
                required=False,
                description=str(flt.extra.get("help_text", "") or ""),
                enum=enum,
            )
        )
    return params


def export_parameters() -> list:
    if not HAVE_SPECTACULAR:
        return []
    return [
        OpenApiParameter(
            name="format",
            type=OpenApiTypes.STR,
            location=OpenApiParameter.QUERY,
            required=False,
            enum=["csv", "json", "ndjson"],
            description="Export format (default csv).",
        ),
        *filter_parameters(),
    ]


def schema_view(patterns: list) -> Any:
    """The schema view for ``schema/``: documents ``patterns`` (the app's ``urlpatterns``,
    read at request time, so routes appended later are included) under the prefix the
    project mounted them at (found from the request path)."""
    from drf_spectacular.renderers import (
        OpenApiJsonRenderer,
        OpenApiJsonRenderer2,
        OpenApiYamlRenderer,
        OpenApiYamlRenderer2,
    )
    from drf_spectacular.views import SpectacularAPIView

    class TrackingSchemaView(ThrottleFirstMixin, SpectacularAPIView):
        permission_classes = (DocsAccess,)
        # JSON unless YAML is asked for (Accept or ?format=yaml): JSON is valid YAML too.
        renderer_classes = [
            OpenApiJsonRenderer,
            OpenApiJsonRenderer2,
            OpenApiYamlRenderer,
            OpenApiYamlRenderer2,
        ]

        @extend_schema(exclude=True)
        def get(self, request: Any, *args: Any, **kwargs: Any) -> Any:
            prefix = request.path.rsplit("schema/", 1)[0].lstrip("/")
            self.patterns = [path(prefix, include((patterns, "tracking")))]
            self.urlconf = None
            return super().get(request, *args, **kwargs)

    return TrackingSchemaView.as_view()


def error_responses(*codes: int) -> dict:
    """Documented error answers (DRF's ``{"detail": ...}`` or ``{"<field>": [...]}``)."""
    if not HAVE_SPECTACULAR:
        return {}
    texts = {
        400: "Invalid filter or body value; the response names the field, e.g. "
        '{"since": ["Enter a valid date/time."]}.',
        401: "Invalid token (when token authentication comes first).",
        403: "Not authenticated, not staff, or missing the required permission.",
        404: "No such activity.",
        429: "Throttled (scopes burst and sustained); see the Retry-After header.",
    }
    return {
        code: OpenApiResponse(response=OpenApiTypes.OBJECT, description=texts[code])
        for code in codes
    }


def view_schema() -> Any:
    """drf-spectacular's inspector for our views, so the schema works even when the project
    keeps DRF's default ``DEFAULT_SCHEMA_CLASS``."""
    from drf_spectacular.openapi import AutoSchema

    return AutoSchema()


def docs_page_view(base: type) -> Any:
    """A drf-spectacular page view (Swagger UI, Redoc) for this app's schema: public, or
    staff-only with ``TRACKING_API_DOCS_STAFF_ONLY``; throttled like the API."""

    class TrackingDocsPage(ThrottleFirstMixin, base):
        permission_classes = (DocsAccess,)

    return TrackingDocsPage.as_view(url_name="tracking:schema")
