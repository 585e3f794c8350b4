"""Blocks in the admin: listed for staff who may read the log; lifted from a block's page by
writing why (needs ``tracking.review_activity``). Nothing else is editable and blocks are never
deleted: creation and lifting stay as the audit trail (see ``tracking.respond.blocks``)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from tracking.api.permissions import REVIEW_PERMISSION, VIEW_PERMISSION
from tracking.models import Block
from tracking.respond import blocks

FIELDS = (
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
    "lifted_by_username",
    "lift_reason",
)


class StatusFilter(admin.SimpleListFilter):
    title = _("status")
    parameter_name = "status"

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, Any]]:
        return [("active", _("Active")), ("expired", _("Expired")), ("lifted", _("Lifted"))]

    def queryset(self, request: Any, queryset: Any) -> Any:
        now = timezone.now()
        value = self.value()
        if value == "lifted":
            return queryset.filter(lifted_at__isnull=False)
        if value == "expired":
            return queryset.filter(lifted_at__isnull=True, expires_at__lte=now)
        if value == "active":
            return queryset.filter(
                Q(expires_at__isnull=True) | Q(expires_at__gt=now), lifted_at=None
            )
        return queryset


@admin.register(Block)
class BlockAdmin(admin.ModelAdmin):
    list_display = (
        "created_at",
        "scope",
        "address",
        "username",
        "source",
        "expires_at",
        "status",
        "lifted_by_username",
    )
    list_filter = (StatusFilter, "scope", "source")
    search_fields = ("address", "username", "reason")
    date_hierarchy = "created_at"
    fields = FIELDS

    @admin.display(description=_("status"))
    def status(self, obj: Block) -> str:
        return obj.status

    def get_readonly_fields(self, request: Any, obj: Any = None) -> tuple[str, ...]:
        if obj is not None and obj.lifted_at is None and self._may_lift(request):
            return tuple(f for f in FIELDS if f != "lift_reason")
        return FIELDS

    def get_form(self, request: Any, obj: Any = None, change: bool = False, **kwargs: Any):
        form = super().get_form(request, obj, change=change, **kwargs)
        if "lift_reason" in form.base_fields:
            form.base_fields["lift_reason"].help_text = _(
                "Write why to lift this block and save; who lifted it and when are recorded."
            )
        return form

    def save_model(self, request: Any, obj: Block, form: Any, change: bool) -> None:
        # The block itself is never saved from here: lifting goes through the one lift path.
        reason = (form.cleaned_data.get("lift_reason") or "").strip()
        if not (change and reason):
            return
        try:
            blocks.lift(Block.objects.get(pk=obj.pk), by=request.user, reason=reason)
        except blocks.BlockError as exc:
            messages.error(request, str(exc))

    def _may_lift(self, request: Any) -> bool:
        return request.user.has_perm(REVIEW_PERMISSION)

    def has_view_permission(self, request: Any, obj: Any = None) -> bool:
        return request.user.is_staff and request.user.has_perm(VIEW_PERMISSION)

    def has_module_permission(self, request: Any) -> bool:
        return self.has_view_permission(request)

    def has_add_permission(self, request: Any) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return self.has_view_permission(request) and self._may_lift(request)

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return False
