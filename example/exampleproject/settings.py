"""Settings of the example shop: the integration docs/installation.md shows, configured from the environment.

Environment:

* ``DATABASE_URL`` (default: SQLite ``example/var/db.sqlite3``, WAL journal + busy timeout so
  several processes can write), parsed by dj-database-url.
* ``GEOIP_PATH`` (default: the demo databases ``make demo`` builds in ``example/var/geoip``).
* ``TRACKING_TRUSTED_PROXIES``: comma-separated CIDRs of your reverse proxies (default none).
* ``TRACKING_ENCRYPTION_KEYS`` / ``TRACKING_SEAL_KEYS`` (comma-separated; first one is current)
  and ``DJANGO_SECRET_KEY``: when unset, per-checkout dev keys in ``example/var/dev-keys.json``.
* ``DJANGO_DEBUG=1``, ``DJANGO_ALLOWED_HOSTS`` (comma-separated), ``TRACKING_ASYNC_HANDOFF``
  (``thread``/``celery``/``sync``), ``CELERY_BROKER_URL``.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
import django

from . import devkeys

BASE_DIR = Path(__file__).resolve().parent.parent  # example/
VAR_DIR = Path(os.environ.get("EXAMPLE_VAR_DIR", BASE_DIR / "var"))


def _list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


_encryption_keys = _list("TRACKING_ENCRYPTION_KEYS")
_seal_keys = _list("TRACKING_SEAL_KEYS")
_secret_key = os.environ.get("DJANGO_SECRET_KEY", "")
if not (_encryption_keys and _seal_keys and _secret_key):
    _dev = devkeys.load(VAR_DIR / "dev-keys.json")
    _encryption_keys = _encryption_keys or [_dev["ENCRYPTION_KEY"]]
    _seal_keys = _seal_keys or [_dev["SEAL_KEY"]]
    _secret_key = _secret_key or _dev["SECRET_KEY"]

SECRET_KEY = _secret_key
DEBUG = os.environ.get("DJANGO_DEBUG", "") == "1"
ALLOWED_HOSTS = _list("DJANGO_ALLOWED_HOSTS") or ["127.0.0.1", "localhost", "[::1]"]
USE_TZ = True
TIME_ZONE = "UTC"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI / Redoc served locally: the demo works offline
    "tracking",
    "shop",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The admin and the security dashboard follow the browser's language (English or
    # Norwegian Bokmål, docs/compatibility.md).
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Records login/logout/token requests and the admin's changes (TRACKING_PATHS) and binds
    # each request for the auth signals and account changes.
    "tracking.middleware.TrackingMiddleware",
]
# First: refuses authenticate() for blocked sources (docs/blocking.md).
AUTHENTICATION_BACKENDS = [
    "tracking.backends.TrackingBackend",
    "django.contrib.auth.backends.ModelBackend",
]

LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("nb", "Norsk bokmål")]

ROOT_URLCONF = "exampleproject.urls"
WSGI_APPLICATION = "exampleproject.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'db.sqlite3'}",
        conn_max_age=60,
    )
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3") and django.VERSION < (5, 1):
    # Django 4.2 lacks the init_command and transaction_mode OPTIONS set below.
    DATABASES["default"]["ENGINE"] = "tracking.compat.sqlite3"
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Several writer processes (web workers, the background writer, Celery) share the file:
    # WAL lets readers run beside the writer; the busy timeout and IMMEDIATE transactions
    # make writers queue instead of failing with "database is locked".
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"

# --- REST framework: the admin's session login and DRF tokens both work on the API ------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_THROTTLE_RATES": {"burst": "60/min", "sustained": "1000/hour"},
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Example shop + activity tracking API",
    "VERSION": "0.1.0",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- activity tracking ------------------------------------------------------------------
SENSITIVE_FIELDS = ["password", "token", "secret"]
GEOIP_PATH = os.environ.get("GEOIP_PATH") or str(VAR_DIR / "geoip")
TRACKING_TRUSTED_PROXIES = _list("TRACKING_TRUSTED_PROXIES")
TRACKING_ENCRYPTION_KEYS = _encryption_keys
TRACKING_SEAL_KEYS = _seal_keys
TRACKING_ASYNC_HANDOFF = os.environ.get("TRACKING_ASYNC_HANDOFF", "thread")
TRACKING_SPOOL_DIR = str(VAR_DIR / "spool")
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"tracking": {"handlers": ["console"], "level": "WARNING"}},
}
