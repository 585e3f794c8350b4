"""The detection engine: detectors and declarative rules, independent of Django models."""

__all__: list[str] = []
