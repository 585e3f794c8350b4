"""The mark a refused request carries (no database, importable before apps are ready).

``TrackingBackend`` marks the request it refuses; ``TrackingMiddleware`` reads the mark to
answer 403, and every event built from the request (``ActivityTracker.build_event``) records
the refusal: ``outcome=failure``, status 403, tag ``blocked``.
"""

from __future__ import annotations

from typing import Any

from tracking.capture.request import django_request

BLOCKED_TAG = "blocked"
_ATTR = "_tracking_refusal"


def mark_refused(request: Any, block: Any) -> None:
    if request is not None:
        setattr(django_request(request), _ATTR, block)


def refusal_of(request: Any) -> Any:
    """The block that refused this request, or None."""
    if request is None:
        return None
    return getattr(django_request(request), _ATTR, None)


def mark_event(request: Any, event: Any) -> None:
    """Record a refused request as what the client got: a failure, 403, tagged ``blocked``."""
    if refusal_of(request) is None:
        return
    event.outcome = "failure"
    event.status = 403
    verdict = dict(event.verdict or {})
    verdict["tags"] = sorted({*(verdict.get("tags") or []), BLOCKED_TAG})
    event.verdict = verdict
