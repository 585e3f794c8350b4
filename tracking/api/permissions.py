"""Who may read and act on activities through the API.

Only authenticated, active staff users holding ``tracking.view_activity`` read anything;
views name further permissions (delete, review, export) in ``required_permissions``.
Non-staff users are refused everywhere, whatever permissions they hold, so no one reaches
another user's activity through the API (object lookups use the same filtered queryset).
"""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from rest_framework.permissions import BasePermission

from tracking.conf import tracking_settings

VIEW_PERMISSION = "tracking.view_activity"
DELETE_PERMISSION = "tracking.delete_activity"
REVIEW_PERMISSION = "tracking.review_activity"
EXPORT_PERMISSION = "tracking.export_activity"


class IsTrackingStaff(BasePermission):
    """Authenticated active staff with the view permission plus the view's own permissions."""

    message = _("Only staff members with access to the activity log may do this.")

    def has_permission(self, request: Any, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated and user.is_active and user.is_staff):
            return False
        required = (VIEW_PERMISSION, *getattr(view, "required_permissions", ()))
        return user.has_perms(required)

    def has_object_permission(self, request: Any, view: Any, obj: Any) -> bool:
        # Staff with the permissions see every activity; the check is repeated per object so
        # a view that forgets has_permission still refuses.
        return self.has_permission(request, view)


class DocsAccess(BasePermission):
    """The OpenAPI schema and its docs pages: public, or active staff only when
    ``TRACKING_API_DOCS_STAFF_ONLY`` is set (read at request time)."""

    message = "The API documentation is for staff members only."

    def has_permission(self, request: Any, view: Any) -> bool:
        if not tracking_settings.API_DOCS_STAFF_ONLY:
            return True
        user = request.user
        return bool(user and user.is_authenticated and user.is_active and user.is_staff)
