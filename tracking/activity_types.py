"""Activity types: the built-in set plus the project's own from ``TRACKING_ACTIVITY_TYPES``."""

from __future__ import annotations

from tracking.conf import tracking_settings

BUILTIN_TYPES: dict[str, str] = {
    "AUTH": "Authentication",
    "PAYMENT": "Payment",
    "ACCOUNT": "Account change",
    "DATA": "Data access",
    "API": "API call",
    "ADMIN": "Administration",
    "OTHER": "Other",
}


def all_types() -> dict[str, str]:
    """Every known type code mapped to its human label (built-ins first)."""
    return {**BUILTIN_TYPES, **dict(tracking_settings.ACTIVITY_TYPES)}


def type_label(code: str) -> str:
    return all_types().get(code, code.title())


def type_choices() -> list[tuple[str, str]]:
    return list(all_types().items())
