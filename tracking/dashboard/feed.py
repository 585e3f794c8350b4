"""The live feed: what arrived since the page's cursor, in one short query per poll.

The page polls (no held connection, no server-sent events pinning a database connection).
The cursor is ``<ISO timestamp>|<activity id>[|<review id>]``: the newest activity and the
newest flag review the page has seen. Rows are written in batches after the request that
produced them, so an activity can commit slightly after a newer one was already shown; each
poll therefore looks back ``DASHBOARD_FEED_LAG`` seconds and the page drops ids it has seen.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Max, QuerySet

from ..conf import tracking_settings
from ..models import Activity, Review
from . import present
from .filters import Filters


class CursorError(ValueError):
    """The ``after`` parameter is not a cursor this endpoint issued."""


@dataclass(frozen=True)
class Cursor:
    timestamp: datetime
    activity_id: str
    review_id: int

    def __str__(self) -> str:
        return f"{self.timestamp.isoformat()}|{self.activity_id}|{self.review_id}"


def parse_cursor(text: str) -> Cursor | None:
    if not text:
        return None
    parts = text.split("|")
    if len(parts) not in (2, 3):
        raise CursorError("after must be '<ISO timestamp>|<activity id>[|<review id>]'")
    try:
        moment = datetime.fromisoformat(parts[0].replace(" ", "+").replace("Z", "+00:00"))
        activity_id = str(uuid.UUID(parts[1])) if parts[1] else ""
        review_id = int(parts[2]) if len(parts) == 3 and parts[2] else 0
    except ValueError as exc:
        raise CursorError("after must be '<ISO timestamp>|<activity id>[|<review id>]'") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return Cursor(moment, activity_id, max(0, review_id))


def _limit() -> int:
    return int(tracking_settings.DASHBOARD_FEED_SIZE)


def poll(after: Cursor | None, filters: Filters) -> dict[str, Any]:
    """New activities (and flags raised by reviewers) since ``after``; the first poll gets
    the latest few. Each activity says whether it belongs in the page's flagged queue."""
    base: QuerySet = Activity.objects.defer("headers", "params")
    limit = _limit()
    if after is None:
        rows = list(base.order_by("-timestamp", "-id")[:limit])
        review_top = Review.objects.aggregate(top=Max("id"))["top"] or 0
        new_reviews: list[Review] = []
    else:
        lag = timedelta(seconds=float(tracking_settings.DASHBOARD_FEED_LAG))
        rows = list(
            base.filter(timestamp__gt=after.timestamp - lag)
            .exclude(id=after.activity_id or None)
            .order_by("-timestamp", "-id")[:limit]
        )
        new_reviews = list(
            Review.objects.filter(id__gt=after.review_id, action=Review.Action.FLAG).order_by("id")[
                :limit
            ]
        )
        # Reviews of other kinds still advance the cursor, so they are not re-read.
        review_top = (
            Review.objects.filter(id__gt=after.review_id).aggregate(top=Max("id"))["top"]
            or after.review_id
        )

    flagged_by_review = {str(r.activity_id): r for r in new_reviews}
    # The cursor follows the time window only: a reviewer flagging last week's activity
    # brings that row in once, without moving the cursor back.
    newest = max(rows, key=lambda a: (a.timestamp, str(a.pk)), default=None)
    seen = {str(a.pk) for a in rows}
    missing = [aid for aid in flagged_by_review if aid not in seen]
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
        item["queue"] = str(act.pk) in in_queue
        review = flagged_by_review.get(str(act.pk))
        item["flagged_by"] = review.reviewer_username if review else ""
        items.append(item)

    if newest is not None and (after is None or newest.timestamp >= after.timestamp):
        cursor = Cursor(newest.timestamp, str(newest.pk), review_top)
    elif after is not None:
        cursor = Cursor(after.timestamp, after.activity_id, review_top)
    else:
        # Nothing stored yet: the next poll is a first poll again (whatever clock the first
        # rows carry, they are shown).
        return {"cursor": "", "activities": items}
    return {"cursor": str(cursor), "activities": items}
