"""Django admin for the audit log (registered on import by ``admin.autodiscover``)."""

from tracking.admin import activity, blocks, networks  # noqa: F401
