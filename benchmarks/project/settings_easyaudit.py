"""django-easy-audit with its request logging (as its README installs it)."""

from .settings_base import *  # noqa: F403
from .settings_base import INSTALLED_APPS, MIDDLEWARE

INSTALLED_APPS = [*INSTALLED_APPS, "easyaudit"]
MIDDLEWARE = [*MIDDLEWARE, "easyaudit.middleware.easyaudit.EasyAuditMiddleware"]
DJANGO_EASY_AUDIT_WATCH_REQUEST_EVENTS = True
