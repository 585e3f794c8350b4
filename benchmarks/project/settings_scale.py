"""Queries at scale: tracking with its API and the admin, on PostgreSQL (``BENCH_DATABASE_URL``)."""

from .settings_tracking import *  # noqa: F403
from .settings_tracking import INSTALLED_APPS

INSTALLED_APPS = ["django.contrib.admin", *INSTALLED_APPS, "django_filters"]
ROOT_URLCONF = "benchmarks.project.urls_scale"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
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
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
}
# Rows are loaded by COPY; nothing to seal or hand off while measuring.
TRACKING_SEAL_ON_WRITE = False
SILENCED_SYSTEM_CHECKS = ["tracking.W072"]  # deliberate here: the loader seals nothing
# The benchmark's client makes hundreds of requests a minute.
TRACKING_THROTTLE_RATES = {"burst": "1000000/min", "sustained": "100000000/hour"}
