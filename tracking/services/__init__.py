"""Compatibility path: ``tracking.services.decorators.track`` is the import the README has
always shown. The code lives in ``tracking.capture``."""

from tracking.capture.decorators import track
from tracking.capture.tracker import ActivityTracker, get_tracker

__all__ = ["ActivityTracker", "get_tracker", "track"]
