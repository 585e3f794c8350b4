"""Recording services: the one recording path and the ``@track`` decorator."""

from .decorators import track
from .tracker import ActivityTracker, get_tracker

__all__ = ["ActivityTracker", "get_tracker", "track"]
