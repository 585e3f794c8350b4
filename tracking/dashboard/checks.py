"""System checks for the dashboard's settings (ids tracking.E090-E099, W090-W099)."""

from __future__ import annotations

from django.apps import apps
from django.core import checks
from django.utils.translation import gettext as _

from tracking.conf import tracking_settings

# A poll must come well within the 2 seconds the live feed promises, and not hammer the DB.
POLL_RANGE = (0.25, 2.0)
SIZE_LIMITS = {
    "DASHBOARD_FEED_SIZE": 500,
    "DASHBOARD_PAGE_SIZE": 500,
    "DASHBOARD_TIMELINE_SIZE": 100,
}


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def dashboard_messages() -> list[checks.CheckMessage]:
    out: list[checks.CheckMessage] = []
    poll = tracking_settings.DASHBOARD_POLL_INTERVAL
    if not _number(poll) or not POLL_RANGE[0] <= poll <= POLL_RANGE[1]:
        out.append(
            checks.Error(
                _(
                    "TRACKING_DASHBOARD_POLL_INTERVAL must be a number of seconds from %(poll_range)s to %(poll_range2)s, got %(poll)r."
                )
                % {"poll_range": POLL_RANGE[0], "poll_range2": POLL_RANGE[1], "poll": poll},
                hint=_(
                    "The live feed shows new activity within 2 seconds only if it polls at "
                    "least that often (default 1.0)."
                ),
                id="tracking.E090",
            )
        )
    for name, limit in SIZE_LIMITS.items():
        value = getattr(tracking_settings, name)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
            out.append(
                checks.Error(
                    _("TRACKING_%(name)s must be an integer from 1 to %(limit)s, got %(value)r.")
                    % {"name": name, "limit": limit, "value": value},
                    hint=_("It bounds how many rows one dashboard request reads."),
                    id="tracking.E091",
                )
            )
    lag = tracking_settings.DASHBOARD_FEED_LAG
    if not _number(lag) or not 0 <= lag <= 3600:
        out.append(
            checks.Error(
                _(
                    "TRACKING_DASHBOARD_FEED_LAG must be a number of seconds from 0 to 3600, got %(lag)r."
                )
                % {"lag": lag},
                hint=_(
                    "How far each live-feed poll looks back for rows committed late "
                    "(batched writers); default 5."
                ),
                id="tracking.E092",
            )
        )
    if not apps.is_installed("django.contrib.staticfiles"):
        out.append(
            checks.Warning(
                _(
                    "django.contrib.staticfiles is not installed: the security dashboard's "
                    "JavaScript and CSS (tracking/static/tracking/dashboard/) must be served "
                    "some other way."
                ),
                hint=_(
                    "Add 'django.contrib.staticfiles' to INSTALLED_APPS, or serve the app's "
                    "static files yourself."
                ),
                id="tracking.W090",
            )
        )
    return out
