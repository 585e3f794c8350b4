"""Activity types: the built-in set plus the project's own from ``TRACKING_ACTIVITY_TYPES``."""

from __future__ import annotations

from django.utils.translation import gettext, gettext_noop

from tracking.conf import tracking_settings

# English labels; all_types() returns them translated into the active language.
BUILTIN_TYPES: dict[str, str] = {
    "AUTH": gettext_noop("Authentication"),
    "PAYMENT": gettext_noop("Payment"),
    "ACCOUNT": gettext_noop("Account change"),
    "DATA": gettext_noop("Data access"),
    "API": gettext_noop("API call"),
    "ADMIN": gettext_noop("Administration"),
    "OTHER": gettext_noop("Other"),
}


def all_types() -> dict[str, str]:
    """Every known type code mapped to its human label in the active language (built-ins
    first); a project's own labels are translated when its catalogs have them."""
    types = {**BUILTIN_TYPES, **dict(tracking_settings.ACTIVITY_TYPES)}
    return {code: gettext(str(label)) for code, label in types.items()}


def type_label(code: str) -> str:
    return all_types().get(code, code.title())


def type_choices() -> list[tuple[str, str]]:
    return list(all_types().items())
