"""django-activity-tracking: a security audit log with anomaly detection for Django.

The public API is imported lazily so that ``import tracking`` works before apps are ready.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["ActivityTracker", "Event", "assess", "track", "__version__"]


def __getattr__(name: str):
    if name == "track":
        from tracking.capture.decorators import track

        return track
    if name == "ActivityTracker":
        from tracking.capture.tracker import ActivityTracker

        return ActivityTracker
    if name == "Event":
        from tracking.events import Event

        return Event
    if name == "assess":
        from tracking.respond.assess import assess

        return assess
    raise AttributeError(name)
