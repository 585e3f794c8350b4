"""A plain Django site for the blocking tests: Django's LoginView (``accounts/``), the admin,
DRF's ``obtain_auth_token``, the tracking API, behind a trusted proxy (see ``SITE``)."""

from pathlib import Path

from django.conf import settings
from django.test import override_settings

TEMPLATES_DIR = str(Path(__file__).resolve().parent / "templates")
PROXY = "10.0.0.1"


def site_settings(**extra):
    """``override_settings`` for a site installed as docs/blocking.md says (three lines)."""
    templates = [dict(settings.TEMPLATES[0], DIRS=[TEMPLATES_DIR])]
    return override_settings(
        ROOT_URLCONF="tests.blocksite.urls",
        MIDDLEWARE=[*settings.MIDDLEWARE, "tracking.middleware.TrackingMiddleware"],
        AUTHENTICATION_BACKENDS=[
            "tracking.backends.TrackingBackend",
            "django.contrib.auth.backends.ModelBackend",
        ],
        TRACKING_TRUSTED_PROXIES=["10.0.0.0/8"],
        TEMPLATES=templates,
        **extra,
    )


def via_proxy(client_ip: str, **extra) -> dict:
    """Request META of a client reaching the site through the trusted proxy."""
    return {"REMOTE_ADDR": PROXY, "HTTP_X_FORWARDED_FOR": client_ip, **extra}
