"""DRF-API-Logger with its background database writer (as its README installs it)."""

from .settings_base import *  # noqa: F403
from .settings_base import INSTALLED_APPS, MIDDLEWARE

INSTALLED_APPS = [*INSTALLED_APPS, "drf_api_logger"]
MIDDLEWARE = [*MIDDLEWARE, "drf_api_logger.middleware.api_logger_middleware.APILoggerMiddleware"]
DRF_API_LOGGER_DATABASE = True
