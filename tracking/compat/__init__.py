"""Support for the oldest Python and Django releases the app runs on (docs/compatibility.md)."""

from __future__ import annotations

import sys
from datetime import datetime

from django.utils.dateparse import parse_datetime


def parse_iso_datetime(text: str) -> datetime:
    """``datetime.fromisoformat`` as Python 3.11 reads ISO 8601 text, on every Python.

    Python 3.10 refuses forms other systems write and 3.11 accepts (fractions of 1, 2, 4 or 5
    digits, a ``+0000`` offset); there Django's parser reads them. Raises ``ValueError``
    for text that is not a date-time.
    """
    if sys.version_info >= (3, 11):
        return datetime.fromisoformat(text)
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        parsed = parse_datetime(text)
        if parsed is None:
            raise
        return parsed
