"""Admin triage at ``/admin/tracking/activity/``: read-only, fast at a million rows.

Nobody edits a recorded activity here. Review actions (flag, unflag, confirm, dismiss) go
through ``tracking.detection.review`` like the API's; deletion, for users with the delete permission,
goes through ``tracking.detection.review.delete_activity`` (signed tombstone + review record).
The changelist never counts the whole table: the paginator counts at most
``TRACKING_COUNT_LIMIT`` + 1 rows and filter choices come from small tables.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import Any

from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import F
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from tracking.activity_types import all_types
from tracking.detection.config import pipeline
from tracking.detection.review import delete_activity, review
from tracking.export.record import decrypted_field
from tracking.models import (
    Activity,
    DailyRollup,
    Finding,
    Review,
    ReviewStatus,
    Rollup,
    Seal,
    Tombstone,
)
from tracking.outcome import FAILURE, SUCCESS
from tracking.storage.counts import bounded_count
from tracking.storage.stats import rollups_cover

logger = logging.getLogger(__name__)

# --- pagination without a full COUNT ------------------------------------------------------


class BoundedCountPaginator(Paginator):
    """Counts at most ``TRACKING_COUNT_LIMIT`` + 1 rows; above that, PostgreSQL's planner
    estimate for an unfiltered table, else the limit."""

    @cached_property
    def count(self) -> int:
        qs: Any = self.object_list
        n, capped = bounded_count(qs)
        if not capped:
            return n
        limit = n
        estimate = _table_estimate(qs) if not qs.query.where else None
        return max(limit, estimate or 0)


def _table_estimate(qs: Any) -> int | None:
    connection = connections[qs.db]
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
            [qs.model._meta.db_table],
        )
        row = cursor.fetchone()
    return int(row[0]) if row and row[0] and row[0] > 0 else None


# --- list filters over small tables -------------------------------------------------------


class TypeFilter(admin.SimpleListFilter):
    title = _("type")
    parameter_name = "type"

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, str]]:
        return list(all_types().items())

    def queryset(self, request: Any, queryset: Any) -> Any:
        return queryset.filter(type=self.value()) if self.value() else queryset


class OutcomeFilter(admin.SimpleListFilter):
    """Fixed choices: a plain field filter would run a DISTINCT over the whole log."""

    title = _("outcome")
    parameter_name = "outcome"

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, Any]]:
        return [(SUCCESS, _("success")), (FAILURE, _("failure"))]

    def queryset(self, request: Any, queryset: Any) -> Any:
        value = self.value()
        return queryset.filter(outcome=value) if value in (SUCCESS, FAILURE) else queryset


class CountryFilter(admin.SimpleListFilter):
    """Countries seen, from the daily rollups (small) rather than a DISTINCT over the log."""

    title = _("country")
    parameter_name = "country"

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, str]]:
        # Daily rows: ~24x fewer than hourly for the same set of countries.
        daily = DailyRollup.objects.exclude(country="").values_list("country", flat=True)
        codes = set(daily.distinct())
        if not codes and not DailyRollup.objects.exists():
            # No rollups (rows stored around the writer): a bounded look at recent rows.
            recent = Activity.objects.order_by("-timestamp").values_list("country", flat=True)[
                :5000
            ]
            codes = {c for c in recent if c}
        selected = self.value()
        if selected:
            codes.add(selected)
        return [(c, c) for c in sorted(codes)]

    def queryset(self, request: Any, queryset: Any) -> Any:
        value = self.value()
        return queryset.filter(country=value.upper()) if value else queryset


def known_tags() -> set[str]:
    """Tags the configured detectors and rules can set, plus those of recent findings.

    Bounded work at any table size: no DISTINCT over the findings table.
    """
    tags: set[str] = set()
    try:
        pipe = pipeline()
        tags |= {d.tag for d in pipe.detectors if getattr(d, "tag", "")}
        for rule in pipe.rules:
            action = getattr(rule, "action", None)
            tags |= set(getattr(action, "tags", ()) or ())
    except Exception:  # a detector misconfiguration is reported by the system checks
        logger.warning("could not list detector tags for the admin filter", exc_info=True)
    recent = Finding.objects.order_by("-timestamp").values_list("tag", flat=True)[:2000]
    tags |= {t for t in recent if t}
    return tags


class TagFilter(admin.SimpleListFilter):
    """Detector tags (from the configured detectors and rules, and recent findings)."""

    title = _("tag")
    parameter_name = "tag"

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, str]]:
        tags = known_tags()
        value = self.value()
        if value:
            tags.add(value)
        return [(t, t) for t in sorted(tags)]

    def queryset(self, request: Any, queryset: Any) -> Any:
        return queryset.with_tags([self.value()]) if self.value() else queryset


# --- date hierarchy from rollups -----------------------------------------------------------

HIERARCHY_PARAMS = ("year", "month", "day")
# Changelist parameters that do not narrow the rows (ordering, page).
_NEUTRAL_PARAMS = frozenset({"o", "p"})


def _dimension_lookups(request: Any) -> dict[str, Any] | None:
    """Rollup lookups equivalent to the changelist's type / country / flagged filters (a
    rollup bucket with ``count``/``flagged`` > 0 holds at least one such row), or None when
    a filter cannot be expressed on rollups (tags, review status, search...)."""
    lookups: dict[str, Any] = {}
    hierarchy = {f"timestamp__{part}" for part in HIERARCHY_PARAMS}
    for key, raw in request.GET.items():
        if key in _NEUTRAL_PARAMS or key in hierarchy:
            continue
        if len(request.GET.getlist(key)) > 1:
            return None
        if key == "type":
            lookups["type"] = raw
        elif key == "country":
            lookups["country"] = raw.upper()
        elif key == "flagged__exact" and raw == "1":
            lookups["flagged__gt"] = 0
        elif key == "flagged__exact" and raw == "0":
            lookups["count__gt"] = F("flagged")
        else:
            return None
    return lookups


def _hierarchy_lookups(request: Any) -> dict[str, Any] | None:
    """Rollup lookups (``bucket__year``/``__month``/``__day`` and the dimension filters)
    when the changelist is narrowed only by the date hierarchy and filters rollups can
    answer, else None."""
    lookups = _dimension_lookups(request)
    if lookups is None:
        return None
    for part in HIERARCHY_PARAMS:
        raw = request.GET.get(f"timestamp__{part}")
        if raw is None:
            continue
        try:
            lookups[f"bucket__{part}"] = int(raw)
        except ValueError:
            return None
    return lookups


def _rollup_model(tzinfo: Any) -> type:
    # Daily rows are UTC days: they answer year/month/day links only when the admin works
    # in UTC; any other time zone reads the hourly rows (exact for whole-hour offsets).
    if tzinfo is None or all(
        tzinfo.utcoffset(datetime(2000, month, 1)) == timedelta(0) for month in (1, 7)
    ):
        return DailyRollup
    return Rollup


def with_rollup_dates(queryset: Any, lookups: dict[str, Any]) -> Any:
    """``queryset`` whose ``datetimes("timestamp", ...)`` (the admin's date hierarchy) reads
    the rollups (daily rows in UTC) instead of a DISTINCT over the whole log."""
    base = type(queryset)

    class RollupDatesQuerySet(base):  # type: ignore[misc,valid-type]  # the queryset's own class
        def datetimes(self, field_name, kind, order="ASC", tzinfo=None):
            if field_name == "timestamp" and kind in HIERARCHY_PARAMS:
                model = _rollup_model(tzinfo)
                filters = {"count__gt": 0, **lookups}
                return model.objects.filter(**filters).datetimes("bucket", kind, order, tzinfo)
            return super().datetimes(field_name, kind, order, tzinfo)

    queryset.__class__ = RollupDatesQuerySet
    return queryset


# --- the activity admin -----------------------------------------------------------------


def _pretty(value: Any) -> str:
    if value is None:
        return "(could not be decrypted)"
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


@admin.register(Activity)
class ActivityAdmin(admin.ModelAdmin):
    list_display = (
        "timestamp",
        "type",
        "username",
        "ip_address",
        "location",
        "endpoint",
        "status",
        "outcome",
        "flagged",
        "risk_score",
        "review_status",
        "tag_list",
    )
    list_filter = (
        TypeFilter,
        CountryFilter,
        OutcomeFilter,
        "flagged",
        "review_status",
        "network_kind",
        TagFilter,
    )
    search_fields = ("username", "^ip_address", "endpoint")
    date_hierarchy = "timestamp"
    list_select_related = ("user",)
    show_full_result_count = False
    paginator = BoundedCountPaginator
    list_per_page = 100
    ordering = ("-timestamp",)
    actions = ("flag", "unflag", "confirm", "dismiss", "delete_with_tombstone")
    exclude = ("headers", "params")
    readonly_fields = (
        "id",
        "timestamp",
        "type",
        "type_display",
        "user",
        "username",
        "session_id",
        "ip_address",
        "remote_addr",
        "forwarded_for",
        "isp",
        "asn",
        "country",
        "region",
        "city",
        "latitude",
        "longitude",
        "accuracy_radius",
        "network_kind",
        "geo_pending",
        "device",
        "os",
        "browser",
        "is_mobile",
        "is_bot",
        "user_agent",
        "endpoint",
        "method",
        "status",
        "outcome",
        "duration",
        "headers_display",
        "params_display",
        "flagged",
        "tag_list",
        "risk_score",
        "severity",
        "findings_display",
        "review_status",
        "reviewed_by",
        "reviewed_at",
        "review_history",
        "seq",
        "mac",
    )
    fieldsets = (
        (None, {"fields": ("id", "timestamp", "type", "type_display", "flagged", "tag_list")}),
        (_("User"), {"fields": ("user", "username", "session_id")}),
        (
            _("Network and place"),
            {
                "fields": (
                    "ip_address",
                    "remote_addr",
                    "forwarded_for",
                    "isp",
                    "asn",
                    "country",
                    "region",
                    "city",
                    "latitude",
                    "longitude",
                    "accuracy_radius",
                    "network_kind",
                    "geo_pending",
                )
            },
        ),
        (_("Device"), {"fields": ("device", "os", "browser", "is_mobile", "is_bot", "user_agent")}),
        (
            _("Request"),
            {
                "fields": (
                    "endpoint",
                    "method",
                    "status",
                    "outcome",
                    "duration",
                    "headers_display",
                    "params_display",
                )
            },
        ),
        (_("Detection"), {"fields": ("risk_score", "severity", "findings_display")}),
        (
            _("Review"),
            {"fields": ("review_status", "reviewed_by", "reviewed_at", "review_history")},
        ),
        (_("Integrity"), {"fields": ("seq", "mac")}),
    )

    def get_changelist_instance(self, request: Any) -> Any:
        changelist = super().get_changelist_instance(request)
        lookups = _hierarchy_lookups(request)
        if lookups is not None and rollups_cover():
            with_rollup_dates(changelist.queryset, lookups)
        return changelist

    # Read-only: no add, no edit, no default delete (deletion writes a tombstone).
    def has_add_permission(self, request: Any) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_review_permission(self, request: Any) -> bool:
        return request.user.has_perm("tracking.review_activity")

    def has_remove_permission(self, request: Any) -> bool:
        return request.user.has_perm("tracking.delete_activity")

    # --- columns ---------------------------------------------------------------------

    @admin.display(description=_("location"), ordering="country")
    def location(self, obj: Activity) -> str:
        return " / ".join(p for p in (obj.country, obj.city) if p)

    @admin.display(description=_("tags"))
    def tag_list(self, obj: Activity) -> str:
        return ", ".join(obj.tags or [])

    @admin.display(description=_("type"))
    def type_display(self, obj: Activity) -> str:
        return obj.type_display

    @admin.display(description=_("headers (decrypted, redacted)"))
    def headers_display(self, obj: Activity) -> str:
        # format_html escapes: recorded payloads (SQL, HTML, JS) render as inert text.
        return format_html("<pre>{}</pre>", _pretty(decrypted_field(obj, "headers")))

    @admin.display(description=_("params (decrypted, redacted)"))
    def params_display(self, obj: Activity) -> str:
        return format_html("<pre>{}</pre>", _pretty(decrypted_field(obj, "params")))

    @admin.display(description=_("findings"))
    def findings_display(self, obj: Activity) -> str:
        findings = obj.findings.order_by("-score", "detector")
        if not findings:
            return "—"
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><pre>{}</pre></td></tr>",
            (
                (
                    f.detector,
                    f.tag,
                    f"{f.score:.2f}",
                    f.severity,
                    f.reason + (" " + _("(suppressed)") if f.suppressed else ""),
                    _pretty(f.evidence),
                )
                for f in findings
            ),
        )
        return format_html(
            "<table><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th>"
            "<th>{}</th><th>{}</th></tr></thead><tbody>{}</tbody></table>",
            _("detector"),
            _("tag"),
            _("score"),
            _("severity"),
            _("reason"),
            _("evidence"),
            rows,
        )

    @admin.display(description=_("review history"))
    def review_history(self, obj: Activity) -> str:
        history = Review.objects.filter(activity_id=obj.pk).order_by("-created_at", "-id")
        if not history:
            return "—"
        return format_html(
            "<ul>{}</ul>",
            format_html_join(
                "",
                "<li>{} — {} {}{}</li>",
                (
                    (
                        r.created_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
                        r.get_action_display(),
                        _("by %(reviewer)s") % {"reviewer": r.reviewer_username}
                        if r.reviewer_username
                        else _("by system"),
                        f": {r.note}" if r.note else "",
                    )
                    for r in history
                ),
            ),
        )

    # --- actions ---------------------------------------------------------------------

    def _review(self, request: Any, queryset: Any, message: Any, **kwargs: Any) -> None:
        """Apply ``review(**kwargs)`` to each selected row; ``message`` has ``%(count)d``."""
        count = 0
        for activity in queryset:
            review(activity, by=request.user, **kwargs)
            count += 1
        self.message_user(request, message % {"count": count}, messages.SUCCESS)

    @admin.action(description=_("Flag selected activities"), permissions=["review"])
    def flag(self, request: Any, queryset: Any) -> None:
        self._review(request, queryset, _("Flagged %(count)d activities."), flagged=True)

    @admin.action(description=_("Unflag selected activities"), permissions=["review"])
    def unflag(self, request: Any, queryset: Any) -> None:
        self._review(request, queryset, _("Unflagged %(count)d activities."), flagged=False)

    @admin.action(description=_("Confirm selected (real incident)"), permissions=["review"])
    def confirm(self, request: Any, queryset: Any) -> None:
        self._review(
            request,
            queryset,
            _("Confirmed %(count)d activities."),
            review_status=ReviewStatus.CONFIRMED,
        )

    @admin.action(description=_("Dismiss selected (false positive)"), permissions=["review"])
    def dismiss(self, request: Any, queryset: Any) -> None:
        self._review(
            request,
            queryset,
            _("Dismissed %(count)d activities."),
            review_status=ReviewStatus.DISMISSED,
        )

    @admin.action(description=_("Delete selected (with signed tombstone)"), permissions=["remove"])
    def delete_with_tombstone(self, request: Any, queryset: Any) -> None:
        count = 0
        for activity in queryset:
            delete_activity(activity, by=request.user, reason="admin")
            count += 1
        self.message_user(
            request, _("Deleted %(count)d activities.") % {"count": count}, messages.SUCCESS
        )


class _ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: Any) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return False


@admin.register(Review)
class ReviewAdmin(_ReadOnlyAdmin):
    list_display = ("created_at", "action", "activity_id", "reviewer_username", "note")
    list_filter = ("action",)
    search_fields = ("=activity_id", "reviewer_username")
    show_full_result_count = False
    paginator = BoundedCountPaginator


@admin.register(Seal)
class SealAdmin(_ReadOnlyAdmin):
    list_display = ("last_seq", "first_seq", "count", "created_at", "key_id")
    exclude = ("leaves",)
    show_full_result_count = False


@admin.register(Tombstone)
class TombstoneAdmin(_ReadOnlyAdmin):
    list_display = ("deleted_at", "activity_id", "reason", "deleted_by", "seq")
    list_filter = ("reason",)
    search_fields = ("=activity_id", "deleted_by")
    show_full_result_count = False
