"""Activity serializers: the compact list item and the full detail, as the seed names them."""

from __future__ import annotations

import math
from typing import Any, cast

from django.db import models
from django.utils.translation import gettext as _
from rest_framework import serializers

from tracking.api.schema import OpenApiTypes, extend_schema_field
from tracking.export.record import decrypted_field
from tracking.models import Activity, Finding, Review, ReviewStatus

LIST_FIELDS = (
    # the compact fields of a list item, in the documented order (docs: the review API)
    "id",
    "timestamp",
    "type",
    "type_display",
    "user",
    "ip_address",
    "endpoint",
    "status",
    "outcome",
    "duration",
    # what triage needs beside them
    "username",
    "flagged",
    "tags",
    "country",
    "city",
    "risk_score",
)


class FiniteFloatField(serializers.FloatField):
    """NaN/Infinity (e.g. from an import) become null: strict JSON cannot carry them."""

    # djangorestframework-stubs types Field.to_representation as str; FloatField returns float.
    def to_representation(self, value: Any) -> float | None:  # type: ignore[override]
        number: Any = super().to_representation(value)
        return number if math.isfinite(number) else None


FLOAT_MAPPING = {
    **serializers.ModelSerializer.serializer_field_mapping,
    models.FloatField: FiniteFloatField,
}


class ActivityListSerializer(serializers.ModelSerializer):
    """The compact list item."""

    serializer_field_mapping = FLOAT_MAPPING

    type_display = serializers.CharField(read_only=True)
    tags = serializers.ListField(child=serializers.CharField(), read_only=True)

    class Meta:
        model = Activity
        fields = LIST_FIELDS
        read_only_fields = LIST_FIELDS


class FindingSerializer(serializers.ModelSerializer):
    serializer_field_mapping = FLOAT_MAPPING

    class Meta:
        model = Finding
        fields = (
            "detector",
            "tag",
            "score",
            "severity",
            "reason",
            "evidence",
            "suppressed",
            "flag",
        )
        read_only_fields = fields


class ReviewSerializer(serializers.ModelSerializer):
    action_display = serializers.CharField(source="get_action_display", read_only=True)

    class Meta:
        model = Review
        fields = ("action", "action_display", "reviewer", "reviewer_username", "note", "created_at")
        read_only_fields = fields


@extend_schema_field(OpenApiTypes.OBJECT if OpenApiTypes is not None else None)  # type: ignore[arg-type]  # None without drf-spectacular
class DecryptedJSONField(serializers.Field):
    """``headers``/``params``: decrypted, redacted again on output; null when undecryptable."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs["source"] = "*"
        kwargs["read_only"] = True
        super().__init__(**kwargs)

    def to_representation(self, activity: Activity) -> Any:
        return decrypted_field(activity, self.field_name or "")


class ActivitySerializer(serializers.ModelSerializer):
    """Every field of an activity, its findings with their explanations, and review history."""

    serializer_field_mapping = FLOAT_MAPPING

    type_display = serializers.CharField(read_only=True)
    tags = serializers.ListField(child=serializers.CharField(), read_only=True)
    headers = DecryptedJSONField(help_text="Request headers, decrypted and redacted.")
    params = DecryptedJSONField(help_text="Request parameters, decrypted and redacted.")
    findings = serializers.SerializerMethodField()
    reviews = serializers.SerializerMethodField()
    reviewed_by_username = serializers.SerializerMethodField()

    class Meta:
        model = Activity
        fields = (
            *LIST_FIELDS,
            "session_id",
            "remote_addr",
            "forwarded_for",
            "isp",
            "asn",
            "region",
            "latitude",
            "longitude",
            "accuracy_radius",
            "network_kind",
            "geo_pending",
            "device",
            "os",
            "browser",
            "is_mobile",
            "is_bot",
            "user_agent",
            "method",
            "outcome",
            "headers",
            "params",
            "severity",
            "review_status",
            "reviewed_by",
            "reviewed_by_username",
            "reviewed_at",
            "seq",
            "mac",
            "findings",
            "reviews",
        )
        read_only_fields = fields

    @extend_schema_field(FindingSerializer(many=True))
    def get_findings(self, activity: Activity) -> list[dict[str, Any]]:
        return cast(
            list[dict[str, Any]],
            FindingSerializer(
                activity.findings.order_by("-score", "detector", "tag"), many=True
            ).data,
        )

    @extend_schema_field(ReviewSerializer(many=True))
    def get_reviews(self, activity: Activity) -> list[dict[str, Any]]:
        history = Review.objects.filter(activity_id=activity.pk).order_by("-created_at", "-id")
        return cast(list[dict[str, Any]], ReviewSerializer(history, many=True).data)

    def get_reviewed_by_username(self, activity: Activity) -> str:
        reviewer = activity.reviewed_by
        return reviewer.get_username() if reviewer else ""


class ReviewRequestSerializer(serializers.Serializer):
    """Body of ``PATCH activities/<id>/flag/``. Empty: toggle ``flagged``."""

    flagged = serializers.BooleanField(required=False, help_text="Set the flag (omit to toggle).")
    review_status = serializers.ChoiceField(
        choices=ReviewStatus.choices, required=False, help_text="Record a verdict."
    )
    note = serializers.CharField(
        required=False, allow_blank=True, max_length=4000, help_text="Reviewer's note."
    )
    teach_network = serializers.BooleanField(
        required=False,
        help_text='With "dismissed": trust the activity\'s network (its AS) for everyone, as an '
        "organisation network (revocable).",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        unknown = set(getattr(self, "initial_data", {}) or {}) - set(self.fields)
        if unknown:
            raise serializers.ValidationError(
                {name: [_("Unknown field.")] for name in sorted(unknown)}
            )
        return attrs
