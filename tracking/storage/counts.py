"""Bounded counting: how many rows match, without scanning more than a limit of them.

The API's pagination, the admin's changelist and the dashboard's queue badge count with
``bounded_count``: at most ``TRACKING_COUNT_LIMIT`` + 1 rows are read, so a count stays
cheap on a table of millions; above the limit the count is reported as capped.
"""

from __future__ import annotations

from typing import Any

from tracking.conf import tracking_settings


def count_limit() -> int:
    """``TRACKING_COUNT_LIMIT`` (at least 1)."""
    return max(1, int(tracking_settings.COUNT_LIMIT))


def bounded_count(queryset: Any, limit: int | None = None) -> tuple[int, bool]:
    """``(count, capped)``: counts at most ``limit`` (default ``count_limit()``) + 1 rows;
    when more match, the count is ``limit`` and ``capped`` is True."""
    limit = count_limit() if limit is None else limit
    n = queryset.order_by()[: limit + 1].count()
    return (limit, True) if n > limit else (n, False)
