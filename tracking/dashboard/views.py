"""The dashboard's pages and the JSON they poll. Access and CSP live in the decorators."""

from __future__ import annotations

import json
import uuid
from typing import Any, cast
from urllib.parse import urlencode

from django.db.models import Q
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_safe

from tracking.activity_types import all_types
from tracking.conf import tracking_settings
from tracking.dashboard import charts, feed, present, timeline
from tracking.dashboard.access import staff_json, staff_page
from tracking.dashboard.filters import ANY, Filters, parse
from tracking.dashboard.jsmessages import js_messages
from tracking.delivery import status as delivery_status
from tracking.integrity.crypto import DecryptionError
from tracking.models import Activity, Finding, Review, ReviewStatus, Severity
from tracking.redaction import redact_headers, redact_mapping
from tracking.storage.counts import bounded_count

REVIEW_PERMISSION = "tracking.review_activity"
EXPORT_PERMISSION = "tracking.export_activity"


def _api_base() -> str:
    """Where the review and stats API live: the app's mount, which also holds the dashboard."""
    index = reverse("tracking:dashboard:index")
    return index[: -len("dashboard/")] if index.endswith("dashboard/") else index


def _page_context(request: HttpRequest, filters: Filters) -> dict[str, Any]:
    api = _api_base()
    return {
        "filters": filters,
        "errors": filters.errors,
        "config": {
            "api_base": api,
            "stats_url": f"{api}stats/",
            "feed_url": reverse("tracking:dashboard:feed"),
            "charts_url": reverse("tracking:dashboard:charts"),
            "poll_ms": int(float(tracking_settings.DASHBOARD_POLL_INTERVAL) * 1000),
            "filter_query": urlencode(filters.query()),
        },
        "can_review": request.user.has_perm(REVIEW_PERMISSION),
        "export_url": _export_url(request, api, filters),
        "js_messages": js_messages(),
    }


def _export_url(request: HttpRequest, api: str, filters: Filters) -> str:
    """The API's export of what the filters select (CSV), for users allowed to export."""
    if not request.user.has_perm(EXPORT_PERMISSION):
        return ""
    query = {k: v for k, v in filters.query().items() if not (k == "review_status" and v == ANY)}
    return f"{api}activities/export/?" + urlencode({"format": "csv", **query})


def _recent_tags() -> list[str]:
    # Bounded by the timestamp index: the newest findings name every detector in use.
    recent = Finding.objects.order_by("-timestamp").values_list("tag", flat=True)[:5000]
    return sorted(set(recent))


def _queue_rows(filters: Filters, before: str, size: int) -> tuple[list[Activity], str]:
    qs = filters.apply(Activity.objects.filter(flagged=True), default_status="open")
    if before:
        cursor = feed.parse_cursor(before)
        if cursor is not None and cursor.activity_id:
            qs = qs.filter(
                Q(timestamp__lt=cursor.timestamp)
                | Q(timestamp=cursor.timestamp, id__lt=cursor.activity_id)
            )
        elif cursor is not None:
            qs = qs.filter(timestamp__lt=cursor.timestamp)
    rows = list(
        qs.defer("headers", "params")
        .prefetch_related(present.open_findings())
        .order_by("-timestamp", "-id")[: size + 1]
    )
    older = ""
    if len(rows) > size:
        rows = rows[:size]
        last = rows[-1]
        older = f"{last.timestamp.isoformat()}|{last.pk}"
    return rows, older


def _queue_total(filters: Filters) -> tuple[int, bool]:
    """The badge counts the whole queue, but never scans more than TRACKING_COUNT_LIMIT rows."""
    qs = filters.apply(Activity.objects.filter(flagged=True), default_status="open")
    return bounded_count(qs)


@staff_page
@require_safe
def index(request: HttpRequest) -> HttpResponse:
    """Flagged queue, live feed and charts on one page."""
    filters = parse(request.GET)
    before = request.GET.get("before", "")
    try:
        rows, older = _queue_rows(filters, before, int(tracking_settings.DASHBOARD_PAGE_SIZE))
    except feed.CursorError as exc:
        filters.errors["before"] = str(exc)
        rows, older = _queue_rows(filters, "", int(tracking_settings.DASHBOARD_PAGE_SIZE))
    older_href = "?" + urlencode({**filters.query(), "before": older}) if older else ""
    context = _page_context(request, filters) | {
        "rows": [
            {
                "activity": a,
                "network": present.network(a),
                "device": present.device(a),
                "findings": cast(Any, a).shown_findings,  # Prefetch(to_attr=...)
            }
            for a in rows
        ],
        "older_href": older_href,
        "queue_total": _queue_total(filters),
        "paged": bool(before),
        "types": sorted(all_types().items()),
        "severities": [c for c in Severity.choices if c[0]],
        "statuses": list(ReviewStatus.choices) + [(ANY, _("Any"))],
        "selected_status": filters.review_status or "open",
        "tags": _recent_tags(),
        "delivery": delivery_status.consumers(),
    }
    status = 400 if filters.errors else 200
    return render(request, "tracking/dashboard/index.html", context, status=status)


def _decrypted(activity: Activity, name: str) -> tuple[str, str]:
    """Pretty JSON of headers/params, redacted again on the way out (idempotent), or an error."""
    try:
        value = getattr(activity, name)
    except DecryptionError as exc:
        return "", _("Cannot decrypt %(name)s: %(error)s") % {"name": name, "error": exc}
    if name == "headers" and isinstance(value, dict):
        value = redact_headers(value)
    elif isinstance(value, dict):
        value = redact_mapping(value)
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str), ""


@staff_page
@require_safe
def activity(request: HttpRequest, pk: str) -> HttpResponse:
    """One activity: the user's timeline around it, findings, request data, review history."""
    try:
        key = uuid.UUID(pk)
    except ValueError:
        key = None
    obj = Activity.objects.filter(pk=key).first() if key else None
    if obj is None:
        return render(request, "tracking/dashboard/404.html", {"pk": pk}, status=404)
    headers, headers_error = _decrypted(obj, "headers")
    params, params_error = _decrypted(obj, "params")
    findings = [
        {
            "finding": f,
            "features": present.feature_table(f.evidence),
            "evidence": json.dumps(
                f.evidence, indent=2, ensure_ascii=False, sort_keys=True, default=str
            ),
        }
        for f in Finding.objects.filter(activity_id=obj.pk).order_by(
            "suppressed", "-score", "detector"
        )
    ]
    context = _page_context(request, parse({})) | {
        "activity": obj,
        "network": present.network(obj),
        "device": present.device(obj),
        "timeline": timeline.around(obj, int(tracking_settings.DASHBOARD_TIMELINE_SIZE)),
        "findings": findings,
        "headers_json": headers,
        "headers_error": headers_error,
        "params_json": params,
        "params_error": params_error,
        "reviews": Review.objects.filter(activity_id=obj.pk).order_by("-created_at", "-id"),
        "flag_url": f"{_api_base()}activities/{obj.pk}/flag/",
    }
    return render(request, "tracking/dashboard/activity.html", context)


def _bad_request(errors: dict[str, str]) -> JsonResponse:
    return JsonResponse({"errors": errors}, status=400)


@staff_json
@require_safe
def feed_view(request: HttpRequest) -> HttpResponse:
    """``?after=<cursor>`` plus the page's filters → new activities and the next cursor."""
    filters = parse(request.GET)
    if filters.errors:
        return _bad_request(filters.errors)
    try:
        after = feed.parse_cursor(request.GET.get("after", "").strip())
    except feed.CursorError as exc:
        return _bad_request({"after": str(exc)})
    known_text = request.GET.get("known", "").strip()
    if known_text and not (known_text.isdigit() and len(known_text) < 10):
        return _bad_request({"known": _("known is a count of activities (a whole number).")})
    known = int(known_text) if known_text else None
    return JsonResponse(feed.poll(after, filters, known=known))


@staff_json
@require_safe
def charts_view(request: HttpRequest) -> HttpResponse:
    filters = parse(request.GET)
    if filters.errors:
        return _bad_request(filters.errors)
    return JsonResponse(charts.chart_data(filters))
