"""The "Security dashboard" link on the admin index, without replacing the admin's template.

The admin's own ``admin/index.html`` stays in charge: ours extends it and adds one module. It
is installed only on the default site and only when the project has not chosen an index
template of its own, so a customised admin is never overridden.
"""

from __future__ import annotations

from django.apps import apps

INDEX_TEMPLATE = "tracking/dashboard/admin_index.html"


def install_admin_link() -> None:
    if not apps.is_installed("django.contrib.admin"):
        return
    from django.contrib import admin

    if admin.site.index_template is None:
        admin.site.index_template = INDEX_TEMPLATE
