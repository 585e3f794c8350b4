"""The texts dashboard.js shows, translated on the server into the request's language.

The page carries them as a JSON block (``json_script``, no inline code under the CSP), keyed
by the English text; the script falls back to the key. ``%(name)s`` placeholders are filled
by the script. Add a text here when dashboard.js gains one.
"""

from __future__ import annotations

from django.utils.translation import gettext, gettext_noop

TEXTS = (
    gettext_noop("Confirmed"),
    gettext_noop("Dismissed"),
    gettext_noop("Reopened"),
    gettext_noop("activity"),
    gettext_noop("Failed"),
    gettext_noop("Review failed: %(error)s"),
    gettext_noop("anonymous"),
    gettext_noop("unknown network"),
    gettext_noop("unknown device"),
    gettext_noop("unknown place"),
    gettext_noop("flagged"),
    gettext_noop("flagged by %(who)s"),
    gettext_noop("+%(n)s more"),
    gettext_noop("note"),
    gettext_noop("Review note"),
    gettext_noop("Confirm"),
    gettext_noop("Dismiss"),
    gettext_noop("Open"),
    gettext_noop("%(action)s by you"),
    gettext_noop("Live · checked %(time)s"),
    gettext_noop("Feed paused (%(error)s), retrying…"),
    gettext_noop("No data for these filters yet."),
    gettext_noop("%(label)s: %(count)s activities, %(flagged)s flagged"),
    gettext_noop("(newest activity %(time)s UTC)"),
    gettext_noop("%(count)s flagged"),
    gettext_noop("%(value)s ms"),
    gettext_noop("Charts unavailable: %(error)s"),
    # An activity's outcome (tracking.outcome), shown in the queue and the feed.
    gettext_noop("success"),
    gettext_noop("failure"),
)


def js_messages() -> dict[str, str]:
    """English text → its translation in the active language (only texts that differ)."""
    out = {}
    for text in TEXTS:
        translated = gettext(text)
        if translated != text:
            out[text] = translated
    return out
