"""Strict ISO 8601 dates and date-times for every user-supplied time (API filters, CLI).

Python's ``datetime.fromisoformat`` (which Django's ``parse_datetime`` tries first) accepts
any character between date and time and ISO week dates, so ``2024W01"10`` or a date with a
newline in it would parse. Only ``YYYY-MM-DD`` and ``YYYY-MM-DD[T ]HH:MM[:SS[.ffffff]]``
with an optional ``Z`` or ``±HH[:]MM`` offset are accepted here; anything else is None.
"""

from __future__ import annotations

import re
from datetime import date, datetime

from django.utils.dateparse import parse_date, parse_datetime

DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
DATETIME_RE = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d{1,6})?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?",
    re.ASCII,
)


def parse_iso_date(text: str) -> date | None:
    """A ``YYYY-MM-DD`` date, or None (also for impossible days such as 2024-02-30)."""
    if not DATE_RE.fullmatch(text):
        return None
    try:
        return parse_date(text)
    except ValueError:
        return None


def parse_iso_datetime(text: str) -> datetime | None:
    """A strict ISO date-time (naive when it has no offset), or None."""
    if not DATETIME_RE.fullmatch(text):
        return None
    try:
        return parse_datetime(text)
    except (ValueError, OverflowError):
        return None
