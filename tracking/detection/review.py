"""The one review path: flag, unflag, verdicts and deletion, used by the API, the admin and
the dashboard alike.

Review state lives outside the row MAC (see ``models.Activity``) and is updated with
``QuerySet.update`` so the encrypted fields and the MAC are never rewritten. Every change
writes a ``Review`` row (who, when, what, note); a verdict is handed to detection
(``feedback.on_review``) so a dismissed alert teaches the user's profile; ``Rollup.flagged`` follows
the flag so statistics read from rollups stay exact.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from tracking.delivery import hooks as delivery
from tracking.detection import feedback, orgnetworks
from tracking.integrity.sealing import delete_activities
from tracking.models import Activity, Review, ReviewStatus
from tracking.storage import rollups

VERDICTS = tuple(ReviewStatus.values)


class ReviewError(ValueError):
    """An invalid review request; ``field`` names the offending input."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _username(user: Any) -> str:
    if user is None or not getattr(user, "is_authenticated", False):
        return ""
    return user.get_username()


def _reviewer(user: Any) -> Any:
    return user if user is not None and getattr(user, "is_authenticated", False) else None


def review(
    activity: Activity,
    *,
    by: Any,
    flagged: bool | None = None,
    toggle: bool = False,
    review_status: str | None = None,
    note: str = "",
    teach_network: bool = False,
) -> Activity:
    """Apply one review action to ``activity`` and return it re-read from the database.

    ``toggle`` flips ``flagged``; ``flagged`` sets it; ``review_status`` records a verdict
    (``open``/``confirmed``/``dismissed``). ``teach_network`` (with ``dismissed`` only) makes
    the activity's network (its AS) an organisation network trusted for everyone
    (``tracking.detection.orgnetworks.teach``; revocable). Nothing is written when nothing
    changes and no note is given. Raises ``ReviewError`` for invalid input before touching
    anything.
    """
    if flagged is not None and not isinstance(flagged, bool):
        raise ReviewError("flagged", _("Must be a boolean."))
    if review_status is not None and review_status not in VERDICTS:
        raise ReviewError(
            "review_status",
            _('"%(value)s" is not a valid choice (%(choices)s).')
            % {"value": review_status, "choices": ", ".join(VERDICTS)},
        )
    if not isinstance(note, str):
        raise ReviewError("note", _("Must be a string."))
    if not isinstance(teach_network, bool):
        raise ReviewError("teach_network", _("Must be a boolean."))
    if teach_network and review_status != ReviewStatus.DISMISSED:
        raise ReviewError("teach_network", _('Only with review_status "dismissed".'))

    with transaction.atomic():
        # Lock the row so two reviewers toggling at once cannot both read the old value.
        current = (
            Activity.objects.select_for_update()
            .only(
                "id",
                "timestamp",
                "type",
                "country",
                "flagged",
                "review_status",
                "username",
                "user",
                "asn",
            )
            .get(pk=activity.pk)
        )
        if teach_network and current.asn is None:
            raise ReviewError(
                "teach_network", _("The activity has no network (AS number) to teach.")
            )
        new_flagged = current.flagged
        if toggle:
            new_flagged = not current.flagged
        elif flagged is not None:
            new_flagged = flagged
        actions: list[str] = []
        if new_flagged != current.flagged:
            actions.append(str(Review.Action.FLAG if new_flagged else Review.Action.UNFLAG))
        if review_status is not None and (review_status != current.review_status or note):
            actions.append(review_status)
        if not actions and note:
            # A note on its own is still part of the record: attach it to the current state.
            actions.append(current.review_status)
        if actions:
            now = timezone.now()
            reviewer = _reviewer(by)
            Activity.objects.filter(pk=current.pk).update(
                flagged=new_flagged,
                review_status=review_status or current.review_status,
                reviewed_by=reviewer,
                reviewed_at=now,
            )
            stored = Review.objects.bulk_create(
                Review(
                    activity_id=current.pk,
                    action=action,
                    reviewer=reviewer,
                    reviewer_username=_username(by),
                    note=note,
                    created_at=now,
                )
                for action in actions
            )
            if new_flagged != current.flagged:
                rollups.adjust_flagged(current, 1 if new_flagged else -1)
            if review_status is not None:
                current.flagged = new_flagged
                current.review_status = review_status
                feedback.on_review(current, review_status)
            if teach_network:
                orgnetworks.teach(
                    current.asn, by=by, name=f"taught in review of activity {current.pk}"
                )
    if actions:
        reviewed = Activity.objects.get(pk=activity.pk)
        delivery.review_committed(reviewed, stored[-1])
        return reviewed
    return Activity.objects.get(pk=activity.pk)


def review_many(activities, *, by: Any, **kwargs: Any) -> int:
    """Apply the same review action to several activities (admin bulk actions)."""
    count = 0
    for activity in activities:
        review(activity, by=by, **kwargs)
        count += 1
    return count


def delete_activity(activity: Activity, *, by: Any, reason: str = "api", note: str = "") -> None:
    """Delete one activity through the integrity path, recording who deleted it and when."""

    with transaction.atomic():
        Review.objects.create(
            activity_id=activity.pk,
            action=Review.Action.DELETE,
            reviewer=_reviewer(by),
            reviewer_username=_username(by),
            note=note or reason,
        )
        deleted = delete_activities([activity.pk], reason=reason, by=_username(by))
        if deleted:
            rollups.forget([activity])
