"""System checks for blocking (ids tracking.E130-E139, W130-W139)."""

from __future__ import annotations

from django.conf import settings
from django.core import checks
from django.utils.translation import gettext as _

from tracking.capture.clientip import parse_networks
from tracking.conf import tracking_settings

BACKEND = "tracking.backends.TrackingBackend"
MIDDLEWARE = "tracking.middleware.TrackingMiddleware"
MAX_CACHE_SECONDS = 300


def respond_messages() -> list[checks.CheckMessage]:
    out: list[checks.CheckMessage] = []
    never = tracking_settings.NEVER_BLOCK
    if not isinstance(never, list | tuple):
        out.append(
            checks.Error(
                _("TRACKING_NEVER_BLOCK must be a list of CIDRs, got %(type)s.")
                % {"type": type(never).__name__},
                hint=_('e.g. TRACKING_NEVER_BLOCK = ["192.0.2.0/24", "2001:db8::/32"]'),
                id="tracking.E130",
            )
        )
    else:
        bad = parse_networks(list(never))[1]
        if bad:
            out.append(
                checks.Error(
                    _("TRACKING_NEVER_BLOCK has entries that are not IP networks: %(bad)r.")
                    % {"bad": bad},
                    hint=_('Use CIDR notation, e.g. "192.0.2.0/24" or a single address.'),
                    id="tracking.E131",
                )
            )
    ttl = tracking_settings.BLOCK_CACHE_SECONDS
    if (
        not isinstance(ttl, int | float)
        or isinstance(ttl, bool)
        or not 0 <= ttl <= MAX_CACHE_SECONDS
    ):
        out.append(
            checks.Error(
                _(
                    "TRACKING_BLOCK_CACHE_SECONDS must be a number of seconds from 0 to "
                    "%(max)d, got %(value)r."
                )
                % {"max": MAX_CACHE_SECONDS, "value": ttl},
                hint=_("Lifted blocks are seen by other processes within this time."),
                id="tracking.E132",
            )
        )
    backends = list(getattr(settings, "AUTHENTICATION_BACKENDS", []))
    if BACKEND in backends:
        if backends[0] != BACKEND:
            out.append(
                checks.Warning(
                    _(
                        "%(backend)s is not first in AUTHENTICATION_BACKENDS: backends before "
                        "it log blocked sources in."
                    )
                    % {"backend": BACKEND},
                    hint=_("Put %(backend)r first.") % {"backend": BACKEND},
                    id="tracking.W130",
                )
            )
        if MIDDLEWARE not in list(getattr(settings, "MIDDLEWARE", [])):
            out.append(
                checks.Warning(
                    _(
                        "%(backend)s is installed without %(middleware)s: refused logins are "
                        "answered as a wrong password instead of 403."
                    )
                    % {"backend": BACKEND, "middleware": MIDDLEWARE},
                    hint=_("Add %(middleware)r to MIDDLEWARE.") % {"middleware": MIDDLEWARE},
                    id="tracking.W131",
                )
            )
    return out
