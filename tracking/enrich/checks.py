"""System checks for enrichment sources (ids tracking.E100-E119, W100-W119).

``TRACKING_TOR_EXIT_LIST`` (E100 / W100) and ``TRACKING_BREACHED_PASSWORDS*`` (E101 / W101).
"""

from __future__ import annotations

import os

from django.core import checks
from django.utils.translation import gettext as _

from tracking.conf import tracking_settings


def enrichment_messages() -> list[checks.CheckMessage]:
    return [*_tor_list_messages(), *_breach_messages()]


def _tor_list_messages() -> list[checks.CheckMessage]:
    tor_list = tracking_settings.TOR_EXIT_LIST
    if not tor_list:
        return []
    if not isinstance(tor_list, str | os.PathLike):
        return [
            checks.Error(
                _("TRACKING_TOR_EXIT_LIST must be the path of a file, got %(value)r.")
                % {"value": tor_list},
                id="tracking.E100",
            )
        ]
    if not os.path.isfile(tor_list):
        return [
            checks.Warning(
                _(
                    "TRACKING_TOR_EXIT_LIST (%(path)s) is not a readable file: no address is "
                    "recognised as a Tor exit."
                )
                % {"path": tor_list},
                hint=_(
                    "Fetch https://check.torproject.org/torbulkexitlist into that file "
                    "(a cron job), or set TRACKING_TOR_EXIT_LIST = ''."
                ),
                id="tracking.W100",
            )
        ]
    return []


def _breach_messages() -> list[checks.CheckMessage]:
    if not tracking_settings.BREACHED_PASSWORDS:
        return []
    out: list[checks.CheckMessage] = []
    url = tracking_settings.BREACHED_PASSWORDS_URL
    path = tracking_settings.BREACHED_PASSWORDS_FILE
    timeout = tracking_settings.BREACHED_PASSWORDS_TIMEOUT
    if url and (not isinstance(url, str) or not url.startswith(("http://", "https://"))):
        out.append(
            checks.Error(
                _("TRACKING_BREACHED_PASSWORDS_URL must be an http(s) URL, got %(value)r.")
                % {"value": url},
                id="tracking.E101",
            )
        )
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 5:
        out.append(
            checks.Error(
                _("TRACKING_BREACHED_PASSWORDS_TIMEOUT must be seconds in (0, 5], got %(value)r.")
                % {"value": timeout},
                id="tracking.E101",
            )
        )
    if path and not os.path.isfile(str(path)):
        out.append(
            checks.Warning(
                _(
                    "TRACKING_BREACHED_PASSWORDS_FILE (%(path)s) is not a readable file: "
                    "no password is recognised as breached."
                )
                % {"path": path},
                id="tracking.W101",
            )
        )
    if not url and not path:
        out.append(
            checks.Warning(
                _("TRACKING_BREACHED_PASSWORDS is on but neither a URL nor a file is set."),
                id="tracking.W101",
            )
        )
    return out
