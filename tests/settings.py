"""Settings for the test suite: SQLite by default, PostgreSQL when DATABASE_URL says so."""

import os
from pathlib import Path

import dj_database_url
import django

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "tests-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
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
    "drf_spectacular_sidecar",
    "tracking",
]
SPECTACULAR_SETTINGS = {
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "tests.urls"
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
STATIC_URL = "/static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", "sqlite:///" + str(BASE_DIR / "var" / "tests.sqlite3")),
        conn_max_age=0,
    )
}
if DATABASES["default"]["ENGINE"].endswith("postgresql") and os.environ.get(
    "TRACKING_TEST_PREPARED"
):
    # Django's opt-in server-side binding with psycopg's prepared statements (every statement
    # prepared on first use): CI runs the PostgreSQL suite once more this way.
    DATABASES["default"]["OPTIONS"] = {"server_side_binding": True, "prepare_threshold": 0}
if os.environ.get("TEST_DB_SUFFIX"):
    DATABASES["default"].setdefault("TEST", {})["NAME"] = "test_" + os.environ["TEST_DB_SUFFIX"]
if DATABASES["default"]["ENGINE"].endswith("sqlite3") and django.VERSION < (5, 1):
    # Django 4.2 lacks the init_command and transaction_mode OPTIONS set below.
    DATABASES["default"]["ENGINE"] = "tracking.compat.sqlite3"
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # One file per run, so parallel runs never share a test database.
    DATABASES["default"]["TEST"] = {
        "NAME": str(BASE_DIR / "var" / f"tests-db-{os.getpid()}.sqlite3")
    }
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
    }

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

# Fixed test keys (never use these anywhere else).
TRACKING_ENCRYPTION_KEYS = ["dGVzdC1lbmNyeXB0aW9uLWtleS0wMDAwMDAwMDAwMDA="]
# 32 bytes, urlsafe base64 (system check tracking.E004); for tests only, not secret.
TRACKING_SEAL_KEYS = ["dGVzdHMtb25seS1zZWFsLWtleS0wMTIzNDU2Nzg5YWJj"]
TRACKING_ASYNC_HANDOFF = "thread"
# Seal right after each write's commit so tests can assert on sealed
# rows without waiting for the writer thread; tests/test_seal_interval.py covers the default
# deferred sealing (TRACKING_SEAL_INTERVAL > 0).
TRACKING_SEAL_INTERVAL = 0
TRACKING_SPOOL_DIR = str(BASE_DIR / "var" / "test-spool")
GEOIP_PATH = str(BASE_DIR / "var" / "test-geoip")
SENSITIVE_FIELDS = ["password", "token", "secret"]
# Every force_login() of the suite would record a login: tests of the auth signals
# (tests/test_auth_recording.py) turn them on.
TRACKING_AUTH_SIGNALS = False

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"null": {"class": "logging.NullHandler"}},
    "loggers": {"tracking": {"handlers": ["null"], "level": "WARNING"}},
}
