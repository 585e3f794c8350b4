"""Django admin for the audit log (registered on import by ``admin.autodiscover``)."""

from tracking.admin import activity, blocks  # noqa: F401
