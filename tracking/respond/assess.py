"""``tracking.assess(request)``: the verdict on the current request before answering it.

A view calls it to decide whether to demand a second factor, refuse, or go on. The request is
judged as an activity would be (enrichment, every detector and rule, the user's profile and
the threshold windows of stored activity) but nothing is stored: detection runs in a
transaction that is rolled back, so profiles and counters are left as they were. Costs the
queries of one synchronous write (a few milliseconds); call it where the answer matters.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction

from tracking.capture.request import django_request
from tracking.capture.tracker import get_tracker
from tracking.detection.runner import detect_batch
from tracking.models import Block
from tracking.pipeline.rows import build_activity
from tracking.respond import blocks


@dataclass(frozen=True, slots=True)
class AssessedFinding:
    detector: str
    tag: str
    score: float
    severity: str
    reason: str
    flag: bool


@dataclass(frozen=True, slots=True)
class Assessment:
    """What detection says about the request (``risk`` 0..1, as ``Activity.risk_score``).

    ``blocked`` is true when an active block refuses the request's source now (``block``);
    ``flagged`` when the request, stored, would open a review."""

    risk: float
    tags: tuple[str, ...]
    findings: tuple[AssessedFinding, ...] = field(default_factory=tuple)
    blocked: bool = False
    block: Block | None = None
    flagged: bool = False
    severity: str = ""


def _user_id(user: Any, username: str) -> Any:
    if user is not None:
        return user.pk
    if not username:
        return None
    model = get_user_model()
    return (
        model._default_manager.filter(**{model.USERNAME_FIELD: username})
        .values_list("pk", flat=True)
        .first()
    )


def assess(
    request: Any, *, user: Any = None, activity_type: str = "AUTH", outcome: str = ""
) -> Assessment:
    """Judge ``request`` now. ``user``: the account the request acts for (default: the
    request's authenticated user; a login view passes the user its form just checked).
    ``outcome``: ``"failure"`` judges it as a failed attempt (e.g. a wrong password, which
    the stuffing and brute-force rules count), ``"success"`` or ``""`` as not failed."""
    if outcome not in ("", "success", "failure"):
        raise ValueError(f"outcome must be 'success', 'failure' or '', got {outcome!r}")
    req = django_request(request)
    if user is None:
        current = getattr(req, "user", None)
        user = current if getattr(current, "is_authenticated", False) else None
    event = get_tracker().build_event(
        request, None, activity_type=activity_type, started=time.perf_counter(), user=user
    )
    # Not answered yet: a failure is judged as the 401 an API would answer.
    event.status = 401 if outcome == "failure" else None
    event.outcome = outcome
    act = build_activity(event)
    act.user_id = _user_id(user, event.username)
    with transaction.atomic():
        rows = detect_batch([act])
        # Judged, not recorded: what detection taught profiles and counters is undone.
        transaction.set_rollback(True)
    active = [f for f in rows if not f.suppressed]
    block = blocks.find_block(act.ip_address, act.username, act.user_id)
    return Assessment(
        risk=float(act.risk_score or 0.0),
        tags=tuple(act.tags or ()),
        findings=tuple(
            AssessedFinding(f.detector, f.tag, f.score, f.severity, f.reason, f.flag)
            for f in active
        ),
        blocked=block is not None,
        block=block,
        flagged=bool(act.flagged),
        severity=act.severity or "",
    )
