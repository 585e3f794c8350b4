"""Blocks in the API: list and detail (staff with ``tracking.view_activity``), lift (also
``tracking.review_activity``). Lifting records who lifted the block and why; rows are never
deleted (see ``tracking.respond.blocks``)."""

from __future__ import annotations

from typing import Any

from django.db.models import Q
from django.shortcuts import get_object_or_404
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from rest_framework import generics, serializers
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from tracking.api.permissions import REVIEW_PERMISSION
from tracking.api.schema import HAVE_SPECTACULAR, OpenApiParameter, error_responses, extend_schema
from tracking.api.views import TrackingAPIMixin
from tracking.models import Block, BlockScope
from tracking.respond import blocks

STATUSES = ("active", "expired", "lifted")


class BlockSerializer(serializers.ModelSerializer):
    status = serializers.CharField(read_only=True)
    lifted_by = serializers.CharField(source="lifted_by_username", read_only=True)

    class Meta:
        model = Block
        fields = (
            "id",
            "scope",
            "address",
            "user",
            "username",
            "reason",
            "source",
            "activity_id",
            "created_at",
            "created_by",
            "expires_at",
            "status",
            "lifted_at",
            "lifted_by",
            "lift_reason",
        )
        read_only_fields = fields


class LiftSerializer(serializers.Serializer):
    reason = serializers.CharField(
        max_length=2000, help_text=_("Why the block is lifted (kept with the block).")
    )


class BlockPagination(LimitOffsetPagination):
    default_limit = 50
    max_limit = 500


def _status_filter(queryset: Any, status: str) -> Any:
    now = timezone.now()
    if status == "lifted":
        return queryset.filter(lifted_at__isnull=False)
    if status == "expired":
        return queryset.filter(lifted_at__isnull=True, expires_at__lte=now)
    return queryset.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now), lifted_at=None)


_LIST_PARAMETERS = (
    [
        OpenApiParameter("status", str, enum=list(STATUSES), description="Only these blocks."),
        OpenApiParameter("scope", str, enum=list(BlockScope.values)),
        OpenApiParameter("address", str, description="Exact address or network (CIDR)."),
        OpenApiParameter("username", str, description="Account name (case-insensitive)."),
    ]
    if HAVE_SPECTACULAR
    else []
)


@extend_schema(
    summary="List blocks",
    description="Newest first. Filters: status (active, expired, lifted), scope, address, "
    "username.",
    parameters=_LIST_PARAMETERS,
    responses={200: BlockSerializer(many=True), **error_responses(400, 403, 429)},
    tags=["blocks"],
)
class BlockListView(TrackingAPIMixin, generics.ListAPIView):
    serializer_class = BlockSerializer
    pagination_class = BlockPagination

    def get_queryset(self) -> Any:
        qs = Block.objects.order_by("-created_at", "-id")
        params = self.request.query_params
        status = params.get("status")
        if status:
            if status not in STATUSES:
                raise ValidationError(
                    {
                        "status": [
                            gettext("choose one of %(choices)s") % {"choices": ", ".join(STATUSES)}
                        ]
                    }
                )
            qs = _status_filter(qs, status)
        scope = params.get("scope")
        if scope:
            if scope not in BlockScope.values:
                raise ValidationError(
                    {
                        "scope": [
                            gettext("choose one of %(choices)s")
                            % {"choices": ", ".join(BlockScope.values)}
                        ]
                    }
                )
            qs = qs.filter(scope=scope)
        if params.get("address"):
            try:
                qs = qs.filter(address=blocks.normalise_network(params["address"]))
            except blocks.BlockError as exc:
                raise ValidationError({"address": [str(exc)]}) from None
        if params.get("username"):
            qs = qs.filter(username=blocks.username_key(params["username"]))
        return qs


@extend_schema(
    summary="Block detail",
    responses={200: BlockSerializer, **error_responses(403, 404, 429)},
    tags=["blocks"],
)
class BlockDetailView(TrackingAPIMixin, generics.RetrieveAPIView):
    serializer_class = BlockSerializer

    def get_queryset(self) -> Any:
        return Block.objects.all()


class BlockLiftView(TrackingAPIMixin, APIView):
    required_permissions = (REVIEW_PERMISSION,)
    serializer_class = LiftSerializer

    @extend_schema(
        summary="Lift a block",
        description="Needs tracking.review_activity. The reason and the lifting user are kept "
        "with the block; every process stops refusing within TRACKING_BLOCK_CACHE_SECONDS.",
        request=LiftSerializer,
        responses={200: BlockSerializer, **error_responses(400, 403, 404, 429)},
        tags=["blocks"],
    )
    def post(self, request: Any, pk: Any) -> Response:
        block = get_object_or_404(Block.objects.all(), pk=pk)
        self.check_object_permissions(request, block)
        body = LiftSerializer(data=request.data if request.data is not None else {})
        body.is_valid(raise_exception=True)
        try:
            block = blocks.lift(block, by=request.user, reason=body.validated_data["reason"])
        except blocks.BlockError as exc:
            raise ValidationError({"detail": [str(exc)]}) from None
        return Response(BlockSerializer(block, context={"request": request}).data)
