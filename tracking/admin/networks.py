"""Admin for organisation networks (learned or taught in review): read-only, revocable."""

from __future__ import annotations

from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from tracking.detection import orgnetworks
from tracking.models import OrganisationNetwork


@admin.register(OrganisationNetwork)
class OrganisationNetworkAdmin(admin.ModelAdmin):
    """Learned and review-taught organisation networks; revoking keeps the row as the record."""

    list_display = ("network", "name", "source", "learned_at", "created_by", "revoked_at")
    list_filter = ("source", ("revoked_at", admin.EmptyFieldListFilter))
    search_fields = ("network", "name")
    readonly_fields = (
        "network",
        "name",
        "source",
        "users",
        "learned_at",
        "created_at",
        "created_by",
        "revoked_at",
        "revoked_by",
    )
    actions = ("revoke",)

    def has_add_permission(self, request) -> bool:
        return False  # configured networks belong in TRACKING_TRUSTED_NETWORKS

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.action(description=_("Revoke the selected networks"), permissions=["change"])
    def revoke(self, request, queryset) -> None:
        for row in queryset:
            orgnetworks.revoke(row, by=request.user)
