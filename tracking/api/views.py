"""The review API: list, detail, flag/review, delete, statistics and export of activities.

Every view: Session and Token authentication (besides the project's defaults), staff with
``tracking.view_activity`` plus the view's own permission, the ``burst`` and ``sustained``
throttles. Object lookups go through the same queryset as the list (no IDOR).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any

from django.apps import apps
from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.utils import timezone
from django.utils.translation import gettext as _
from rest_framework import generics, serializers, status
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.exceptions import ValidationError
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from tracking.api.filters import ActivityFilter
from tracking.api.pagination import ActivityPagination
from tracking.api.permissions import (
    DELETE_PERMISSION,
    EXPORT_PERMISSION,
    REVIEW_PERMISSION,
    IsTrackingStaff,
)
from tracking.api.schema import (
    HAVE_SPECTACULAR,
    OpenApiResponse,
    OpenApiTypes,
    error_responses,
    export_parameters,
    extend_schema,
    filter_parameters,
    view_schema,
)
from tracking.api.serializers import (
    ActivityListSerializer,
    ActivitySerializer,
    ReviewRequestSerializer,
)
from tracking.api.throttling import ThrottleFirstMixin
from tracking.dates import parse_iso_date
from tracking.detection.review import ReviewError, delete_activity, review
from tracking.export import record
from tracking.export.records import stream_export
from tracking.models import Activity
from tracking.storage import stats

UTC = dt_timezone.utc


def authentication_classes() -> list[type]:
    """The project's authentication classes, plus Session and Token when missing."""
    classes: list[Any] = list(api_settings.DEFAULT_AUTHENTICATION_CLASSES)
    if SessionAuthentication not in classes:
        classes.append(SessionAuthentication)
    if apps.is_installed("rest_framework.authtoken"):
        if not any(issubclass(c, TokenAuthentication) for c in classes):
            classes.append(TokenAuthentication)
    return classes


class TrackingAPIMixin(ThrottleFirstMixin):
    """Authentication, permission and throttling (before the permission check) shared by
    every endpoint."""

    if HAVE_SPECTACULAR:
        schema = view_schema()
    permission_classes: Sequence[Any] = (IsTrackingStaff,)
    required_permissions: tuple[str, ...] = ()

    def get_authenticators(self) -> list:
        # Read at request time so override_settings and late configuration apply.
        return [auth() for auth in authentication_classes()]

    def get_queryset(self) -> Any:
        return Activity.objects.all()

    def filter_activities(self, request: Any) -> tuple[Any, ActivityFilter]:
        """The activities matching the request's filters, or a 400 naming the bad ones."""
        filterset = ActivityFilter(
            request.query_params, queryset=self.get_queryset(), request=request
        )
        if not filterset.is_valid():
            raise ValidationError(filterset.errors)
        return filterset.qs, filterset


@extend_schema(
    summary="List activities",
    description="Filterable, paginated list. `count` is exact below TRACKING_COUNT_LIMIT; "
    "above it `count` is the limit and `count_is_estimate` is true. Use `?cursor=` to page deep.",
    parameters=filter_parameters(),
    responses={200: ActivityListSerializer(many=True), **error_responses(400, 403, 404, 429)},
    tags=["activities"],
)
class ActivityListView(TrackingAPIMixin, generics.ListAPIView):
    serializer_class = ActivityListSerializer
    pagination_class = ActivityPagination
    # Filtering is done here rather than by a filter backend so the schema documents the
    # parameters once, explicitly (extend_schema above), with their real types.
    filter_backends = ()

    def get_queryset(self) -> Any:
        return Activity.objects.order_by("-timestamp", "-id")

    def filter_queryset(self, queryset: Any) -> Any:
        return self.filter_activities(self.request)[0]


@extend_schema(
    summary="Activity detail",
    responses={200: ActivitySerializer, **error_responses(403, 404, 429)},
    tags=["activities"],
)
class ActivityDetailView(TrackingAPIMixin, generics.RetrieveAPIView):
    serializer_class = ActivitySerializer
    lookup_field = "pk"

    def get_queryset(self) -> Any:
        return Activity.objects.select_related("reviewed_by")


class ActivityDeleteView(TrackingAPIMixin, APIView):
    required_permissions = (DELETE_PERMISSION,)

    @extend_schema(
        summary="Delete an activity",
        description="Needs tracking.delete_activity. Writes a signed tombstone and a review "
        "record of the deletion (who, when, which id).",
        responses={204: OpenApiResponse(description="Deleted."), **error_responses(403, 404, 429)}
        if HAVE_SPECTACULAR
        else None,
        tags=["activities"],
    )
    def delete(self, request: Any, pk: Any) -> Response:
        activity = get_object_or_404(self.get_queryset(), pk=pk)
        self.check_object_permissions(request, activity)
        delete_activity(activity, by=request.user, reason="api")
        return Response(status=status.HTTP_204_NO_CONTENT)


class ActivityFlagView(TrackingAPIMixin, APIView):
    required_permissions = (REVIEW_PERMISSION,)
    serializer_class = ReviewRequestSerializer

    @extend_schema(
        summary="Flag, unflag or review an activity",
        description='Empty body: toggle `flagged`. `{"flagged": true|false}` sets it. '
        '`{"review_status": "confirmed"|"dismissed"|"open", "note": "..."}` records a '
        'verdict; with `"teach_network": true` a dismissal makes the activity\'s network (its '
        "AS) an organisation network trusted for everyone. Records the reviewer and time; "
        "returns the updated detail.",
        request=ReviewRequestSerializer,
        responses={200: ActivitySerializer, **error_responses(400, 403, 404, 429)},
        tags=["activities"],
    )
    def patch(self, request: Any, pk: Any) -> Response:
        activity = get_object_or_404(self.get_queryset(), pk=pk)
        self.check_object_permissions(request, activity)
        data = request.data if request.data is not None else {}
        body = ReviewRequestSerializer(data=data)
        body.is_valid(raise_exception=True)
        values = body.validated_data
        toggle = "flagged" not in values and "review_status" not in values
        try:
            updated = review(
                activity,
                by=request.user,
                flagged=values.get("flagged"),
                toggle=toggle,
                review_status=values.get("review_status"),
                note=values.get("note", ""),
                teach_network=values.get("teach_network", False),
            )
        except ReviewError as exc:
            raise ValidationError({exc.field: [exc.message]}) from None
        return Response(ActivitySerializer(updated, context={"request": request}).data)


# --- statistics -------------------------------------------------------------------------


class _CountsSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    flagged = serializers.IntegerField()
    last_30_days = serializers.IntegerField()


class _ResponseTimesSerializer(serializers.Serializer):
    avg = serializers.FloatField(allow_null=True)
    max = serializers.FloatField(allow_null=True)
    min = serializers.FloatField(allow_null=True)


class _TypeCountSerializer(serializers.Serializer):
    type = serializers.CharField()
    type_display = serializers.CharField()
    count = serializers.IntegerField()


class _DaySerializer(serializers.Serializer):
    date = serializers.DateField()
    total = serializers.IntegerField()
    flagged = serializers.IntegerField()


class _HourSerializer(serializers.Serializer):
    hour = serializers.DateTimeField()
    total = serializers.IntegerField()
    flagged = serializers.IntegerField()


class _CountryCountSerializer(serializers.Serializer):
    country = serializers.CharField()
    count = serializers.IntegerField()


class _UserCountSerializer(serializers.Serializer):
    username = serializers.CharField()
    count = serializers.IntegerField()


class _TagCountSerializer(serializers.Serializer):
    tag = serializers.CharField()
    count = serializers.IntegerField()


class _DetectorCountSerializer(serializers.Serializer):
    detector = serializers.CharField()
    count = serializers.IntegerField()


class _ReviewCountsSerializer(serializers.Serializer):
    open = serializers.IntegerField()
    confirmed = serializers.IntegerField()
    dismissed = serializers.IntegerField()


class StatsSerializer(serializers.Serializer):
    """The statistics document of `stats/`: counts, plus series and breakdowns."""

    counts = _CountsSerializer()
    response_times = _ResponseTimesSerializer()
    types = _TypeCountSerializer(many=True)
    per_day = _DaySerializer(many=True)
    per_hour = _HourSerializer(
        many=True, required=False, help_text="Only for windows of at most 7 days (since given)."
    )
    top_countries = _CountryCountSerializer(many=True)
    top_flagged_users = _UserCountSerializer(many=True)
    tags = _TagCountSerializer(many=True, help_text="Findings per detector tag.")
    detectors = _DetectorCountSerializer(many=True)
    review_status = _ReviewCountsSerializer()
    # A declared field named like Field.source: DRF's metaclass moves it to _declared_fields.
    source = serializers.ChoiceField(choices=["rollup", "query"])  # type: ignore[assignment]


class StatsView(TrackingAPIMixin, APIView):
    @extend_schema(
        summary="Activity statistics",
        description="The list's filters apply. With no filter but an hour-aligned since/until "
        "the figures come from hourly rollups (no scan of the log).",
        parameters=filter_parameters(),
        responses={200: StatsSerializer, **error_responses(400, 403, 429)},
        tags=["statistics"],
    )
    def get(self, request: Any) -> Response:
        queryset, filterset = self.filter_activities(request)
        data = filterset.form.cleaned_data
        result = stats.compute_stats(
            queryset,
            since=data.get("since"),
            until=data.get("until"),
            filtered=filterset.narrows,
        )
        return Response(result)


# --- export -----------------------------------------------------------------------------


def _stamp(value: datetime | None, bare_date: bool = False, end: bool = False) -> str:
    """A filename part from a *parsed* time only (never the raw parameter): the day for a
    bare date (``until``'s parsed value is the next midnight), else a UTC stamp."""
    if value is None:
        return ""
    if bare_date:
        local = timezone.localtime(value) - (timedelta(days=1) if end else timedelta(0))
        return local.date().isoformat()
    return value.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _bare(params: Any, name: str) -> bool:
    return parse_iso_date(str(params.get(name) or "").strip()) is not None


def export_filename(queryset: Any, params: Any, cleaned: dict[str, Any], fmt: str) -> str:
    """``activities_<since>_<until>.<fmt>``: the requested window, else the data's first
    timestamp and now. Built from parsed values and the format (one of ``FORMATS``) only."""
    since = _stamp(cleaned.get("since"), _bare(params, "since"))
    if not since:
        first = queryset.order_by("timestamp").values_list("timestamp", flat=True).first()
        since = _stamp(first) or "start"
    until = _stamp(cleaned.get("until"), _bare(params, "until"), end=True)
    if not until:
        until = _stamp(timezone.now())
    return f"activities_{since}_{until}.{fmt}"


class ExportView(TrackingAPIMixin, APIView):
    required_permissions = (EXPORT_PERMISSION,)
    # Errors (400/403/429) are JSON; the export itself bypasses renderers.
    renderer_classes = (JSONRenderer,)

    def perform_content_negotiation(self, request: Any, force: bool = False) -> Any:
        # `?format=csv` is ours, not DRF's URL_FORMAT_OVERRIDE: never 404 for "no csv renderer".
        return super().perform_content_negotiation(request, force=True)

    @extend_schema(
        summary="Export activities",
        description="Streams every field of the matching activities as CSV (default), JSON or "
        "NDJSON in constant memory; the list's filters apply. Needs tracking.export_activity. "
        "CSV text cells starting with = + - @ tab, CR or ' are prefixed with '.",
        parameters=export_parameters(),
        responses={
            (200, "text/csv"): OpenApiTypes.STR,
            (200, "application/json"): OpenApiTypes.OBJECT,
            (200, "application/x-ndjson"): OpenApiTypes.STR,
            **error_responses(400, 403, 429),
        }
        if HAVE_SPECTACULAR
        else None,
        tags=["activities"],
    )
    def get(self, request: Any) -> StreamingHttpResponse:
        fmt = (request.query_params.get("format") or "csv").lower()
        if fmt not in record.FORMATS:
            raise ValidationError(
                {
                    "format": [
                        _('"%(value)s" is not a valid choice (%(choices)s).')
                        % {"value": fmt, "choices": ", ".join(record.FORMATS)}
                    ]
                }
            )
        queryset, filterset = self.filter_activities(request)
        if not filterset.form.cleaned_data.get("ordering"):
            queryset = queryset.order_by("timestamp", "id")
        name = export_filename(queryset, request.query_params, filterset.form.cleaned_data, fmt)
        response = StreamingHttpResponse(
            stream_export(queryset, fmt), content_type=record.CONTENT_TYPES[fmt]
        )
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        response["X-Content-Type-Options"] = "nosniff"
        response["Cache-Control"] = "no-store"
        return response
