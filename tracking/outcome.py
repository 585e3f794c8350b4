"""The outcome of an activity: ``success``, ``failure``, or ``""`` where it means nothing.

A login form answers a wrong password with 200 and a form error, so the status alone cannot
tell a failed attempt: the auth signals, ``@track(outcome=...)`` and imports say it
explicitly. Where nothing says it, the status decides (>= 400 is a failure).
"""

from __future__ import annotations

from typing import Any

SUCCESS = "success"
FAILURE = "failure"
OUTCOMES = (SUCCESS, FAILURE)


def from_status(status: Any) -> str:
    """``failure`` for a status >= 400, ``success`` below, ``""`` without a status."""
    if status is None or status == "" or isinstance(status, bool):
        return ""
    try:
        code = int(status)
    except (TypeError, ValueError):
        return ""
    return FAILURE if code >= 400 else SUCCESS


def clean(value: Any) -> str:
    """A valid outcome (case-insensitive; None and "" mean none); ``ValueError`` otherwise."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return SUCCESS if value else FAILURE
    text = str(value).strip().lower()
    if text and text not in OUTCOMES:
        raise ValueError(f"invalid outcome {value!r} (expected 'success', 'failure' or empty)")
    return text


def failed(outcome: str, status: Any) -> bool:
    """Whether an activity failed: its outcome when it has one, else its status."""
    if outcome:
        return outcome == FAILURE
    return from_status(status) == FAILURE
