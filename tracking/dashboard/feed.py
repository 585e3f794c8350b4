"""The live feed: what arrived since the page's cursor, in one short query per poll.

The page polls (no held connection, no server-sent events pinning a database connection).
The cursor is ``<ISO timestamp>|<activity id>|<review id>``: the newest activity and the
newest review the page has seen.

Activities are not committed in timestamp order (batched writers, Celery, a test inserting a
row stamped a minute ago), so "newer than the cursor" would miss some. Each poll therefore
looks at a window reaching ``DASHBOARD_FEED_LAG`` seconds behind the cursor; the page says
how many of that window's rows it already holds (``known``) and gets rows back only when the
window holds a different number. A quiet poll is one indexed count.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any

from django.db.models import Max, QuerySet
from django.utils.translation import gettext, gettext_noop

from tracking.conf import tracking_settings
from tracking.dashboard import present
from tracking.dashboard.filters import Filters
from tracking.models import Activity, Review

UTC = dt_timezone.utc


class CursorError(ValueError):
    """The ``after`` parameter is not a cursor this endpoint issued."""


CURSOR_FORMAT = gettext_noop("a cursor is '<ISO timestamp>[|<activity id>[|<review id>]]'")


@dataclass(frozen=True)
class Cursor:
    timestamp: datetime
    activity_id: str
    review_id: int | None

    def __str__(self) -> str:
        return f"{self.timestamp.isoformat()}|{self.activity_id}|{self.review_id or 0}"


def parse_cursor(text: str) -> Cursor | None:
    """``<ISO timestamp>[|<activity id>[|<review id>]]``; without a review id, flags raised
    after the timestamp count as new."""
    if not text:
        return None
    parts = text.split("|")
    if len(parts) > 3:
        raise CursorError(gettext(CURSOR_FORMAT))
    parts += [""] * (3 - len(parts))
    try:
        moment = datetime.fromisoformat(parts[0].replace(" ", "+").replace("Z", "+00:00"))
        activity_id = str(uuid.UUID(parts[1])) if parts[1] else ""
        review_id = int(parts[2]) if parts[2] else None
    except ValueError as exc:
        raise CursorError(gettext(CURSOR_FORMAT)) from exc
    if review_id is not None and review_id < 0:
        raise CursorError(gettext(CURSOR_FORMAT))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return Cursor(moment, activity_id, review_id)


def _limit() -> int:
    return int(tracking_settings.DASHBOARD_FEED_SIZE)


def window_start(cursor: Cursor) -> datetime:
    """Start of the look-back window behind ``cursor``: rows newer than this may still be new."""
    lag = timedelta(seconds=float(tracking_settings.DASHBOARD_FEED_LAG))
    return cursor.timestamp.astimezone(UTC) - lag


def stamp(moment: datetime) -> str:
    """ISO text with fixed precision, so the page can compare timestamps as strings."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def poll(after: Cursor | None, filters: Filters, *, known: int | None = None) -> dict[str, Any]:
    """New activities (and flags raised by reviewers) since ``after``; the first poll gets
    the latest few. Each activity says whether it belongs in the page's flagged queue.

    ``known`` is how many activities of the look-back window the page already holds. When the
    window still holds exactly that many rows nothing arrived, and the poll costs one indexed
    count; otherwise the window's newest rows are sent again and the page drops the ones it
    has. Without ``known`` the window (minus the cursor's own row) is always sent.
    """
    base: QuerySet = Activity.objects.defer("headers", "params")
    limit = _limit()
    new_reviews: list[Review] = []
    if after is None:
        rows = list(base.order_by("-timestamp", "-id")[:limit])
        review_top = Review.objects.aggregate(top=Max("id"))["top"] or 0
    else:
        window = base.filter(timestamp__gt=window_start(after))
        if known is not None and window.count() == known:
            rows = []
        else:
            if known is None:
                window = window.exclude(id=after.activity_id or None)
            rows = list(window.order_by("-timestamp", "-id")[:limit])
        reviews = (
            Review.objects.filter(id__gt=after.review_id)
            if after.review_id is not None
            else Review.objects.filter(created_at__gt=after.timestamp)
        )
        new_reviews = list(reviews.filter(action=Review.Action.FLAG).order_by("id")[:limit])
        # Reviews of other kinds still advance the cursor, so they are not re-read.
        review_top = reviews.aggregate(top=Max("id"))["top"] or after.review_id or 0

    flagged_by_review = {str(r.activity_id): r for r in new_reviews}
    # The cursor follows the time window only: a reviewer flagging last week's activity
    # brings that row in once, without moving the cursor back.
    newest = max(rows, key=lambda a: (a.timestamp, str(a.pk)), default=None)
    fetched = {str(a.pk) for a in rows}
    missing = [aid for aid in flagged_by_review if aid not in fetched]
    if missing:
        rows += list(base.filter(id__in=missing))
    rows.sort(key=lambda a: (a.timestamp, str(a.pk)))

    ids = [a.pk for a in rows]
    reasons = present.reasons_for(ids)
    in_queue = {
        str(pk)
        for pk in filters.apply(
            Activity.objects.filter(flagged=True, id__in=ids), default_status="open"
        ).values_list("id", flat=True)
    }
    items = []
    for act in rows:
        item = present.row(act, reasons.get(str(act.pk), []))
        item["timestamp"] = stamp(act.timestamp)
        item["queue"] = str(act.pk) in in_queue
        review = flagged_by_review.get(str(act.pk))
        item["flagged_by"] = review.reviewer_username if review else ""
        items.append(item)

    if after is not None and (
        newest is None or (newest.timestamp, str(newest.pk)) <= (after.timestamp, after.activity_id)
    ):
        cursor = Cursor(after.timestamp, after.activity_id, review_top)
    elif newest is not None:
        cursor = Cursor(newest.timestamp, str(newest.pk), review_top)
    else:
        # Nothing stored yet: the next poll is a first poll again (whatever clock the first
        # rows carry, they are shown).
        return {"cursor": "", "window_start": "", "activities": items}
    return {"cursor": str(cursor), "window_start": stamp(window_start(cursor)), "activities": items}
