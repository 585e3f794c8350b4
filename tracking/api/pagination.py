"""Pagination in the seed's envelope ``{count, next, previous, results}``, fast at scale.

* Page numbers (``?page=2``, ``?page_size=`` up to ``TRACKING_MAX_PAGE_SIZE``). Counting is
  bounded: at most ``TRACKING_COUNT_LIMIT`` + 1 rows are counted. Below the limit ``count``
  is exact; above it ``count`` is the limit and the envelope adds ``"count_is_estimate":
  true``. ``next`` is present whenever another row exists, however deep.
* A cursor mode for deep paging (``?cursor=`` — empty for the first page — then follow
  ``next``): keyset pagination on ``(-timestamp, -id)`` (or ``(timestamp, id)`` with
  ``ordering=timestamp``), with the same envelope and bounded count.
"""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext as _
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import BasePagination, CursorPagination
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.utils.urls import remove_query_param, replace_query_param

from tracking.conf import tracking_settings
from tracking.storage.counts import bounded_count, count_limit

DEFAULT_PAGE_SIZE = 50
# Deeper than this is what cursor mode is for (and keeps OFFSET inside 64 bits).
MAX_PAGE_NUMBER = 1_000_000


def _positive_int(request: Any, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return None
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ValidationError({name: [_("A valid integer is required.")]}) from None
    if value < 1:
        raise ValidationError({name: [_("Ensure this value is greater than or equal to 1.")]})
    return value


def page_size_for(request: Any) -> int:
    limit = max(1, int(tracking_settings.MAX_PAGE_SIZE))
    default = api_settings.PAGE_SIZE or DEFAULT_PAGE_SIZE
    size = _positive_int(request, "page_size") or default
    return min(size, limit)


class _Cursor(CursorPagination):
    cursor_query_param = "cursor"
    page_size_query_param = "page_size"
    ordering = ("-timestamp", "-id")

    def get_page_size(self, request: Any) -> int:
        return page_size_for(request)

    def get_ordering(self, request: Any, queryset: Any, view: Any) -> tuple[str, ...]:
        if request.query_params.get("ordering") == "timestamp":
            return ("timestamp", "id")
        return ("-timestamp", "-id")


class ActivityPagination(BasePagination):
    """Page-number pagination with bounded counting, or cursor mode on ``?cursor=``."""

    page_query_param = "page"
    cursor_query_param = "cursor"

    def paginate_queryset(self, queryset: Any, request: Any, view: Any = None) -> list | None:
        self.request = request
        self.count_limit = count_limit()
        self.count, self.estimate = 0, False
        self.cursor = None
        if self.cursor_query_param in request.query_params:
            self.cursor = _Cursor()
            try:
                rows: list | None = self.cursor.paginate_queryset(queryset, request, view)
            except NotFound:
                raise ValidationError({"cursor": [_("Invalid cursor.")]}) from None
            self.count, self.estimate = bounded_count(queryset, self.count_limit)
            return rows

        size = page_size_for(request)
        number = _positive_int(request, self.page_query_param) or 1
        if number > MAX_PAGE_NUMBER:
            raise NotFound(_("Invalid page."))
        offset = (number - 1) * size
        rows = list(queryset[offset : offset + size + 1])
        self.has_next = len(rows) > size
        rows = rows[:size]
        if number > 1 and not rows:
            raise NotFound(_("Invalid page."))
        if not self.has_next and (rows or number == 1):
            # The last page tells the exact total without a COUNT.
            self.count, self.estimate = offset + len(rows), False
        else:
            self.count, self.estimate = bounded_count(queryset, self.count_limit)
            if not self.estimate and self.count < offset + len(rows):
                self.count = offset + len(rows)
        self.number = number
        return rows

    def get_next_link(self) -> str | None:
        if self.cursor is not None:
            return self.cursor.get_next_link()
        if not self.has_next:
            return None
        url = self.request.build_absolute_uri()
        return replace_query_param(url, self.page_query_param, self.number + 1)

    def get_previous_link(self) -> str | None:
        if self.cursor is not None:
            return self.cursor.get_previous_link()
        if self.number <= 1:
            return None
        url = self.request.build_absolute_uri()
        if self.number == 2:
            return remove_query_param(url, self.page_query_param)
        return replace_query_param(url, self.page_query_param, self.number - 1)

    def get_paginated_response(self, data: list) -> Response:
        body: dict[str, Any] = {
            "count": self.count,
            "next": self.get_next_link(),
            "previous": self.get_previous_link(),
            "results": data,
        }
        if self.estimate:
            body["count_is_estimate"] = True
        return Response(body)

    def get_paginated_response_schema(self, schema: dict) -> dict:
        return {
            "type": "object",
            "required": ["count", "results"],
            "properties": {
                "count": {
                    "type": "integer",
                    "example": 125,
                    "description": "Exact below TRACKING_COUNT_LIMIT; the limit above it "
                    "(then count_is_estimate is true).",
                },
                "count_is_estimate": {
                    "type": "boolean",
                    "description": "Present and true when count was capped.",
                },
                "next": {
                    "type": "string",
                    "nullable": True,
                    "format": "uri",
                    "example": "http://api.example.org/api/tracking/activities/?page=2",
                },
                "previous": {"type": "string", "nullable": True, "format": "uri"},
                "results": schema,
            },
        }

    def get_schema_operation_parameters(self, view: Any) -> list[dict]:
        return [
            {
                "name": "page",
                "required": False,
                "in": "query",
                "description": "Page number (1-based).",
                "schema": {"type": "integer", "minimum": 1},
            },
            {
                "name": "page_size",
                "required": False,
                "in": "query",
                "description": "Results per page (at most TRACKING_MAX_PAGE_SIZE).",
                "schema": {"type": "integer", "minimum": 1},
            },
            {
                "name": "cursor",
                "required": False,
                "in": "query",
                "description": "Cursor mode for deep paging: pass it empty for the first "
                "page, then follow `next`.",
                "schema": {"type": "string"},
            },
        ]
