"""Compatibility path for ``from tracking.services.decorators import track``."""

from tracking.capture.decorators import track

__all__ = ["track"]
