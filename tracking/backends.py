"""``TrackingBackend``: refuses ``authenticate()`` for a blocked source.

Put it first in ``AUTHENTICATION_BACKENDS`` (as django-axes does). For a source under a block
it raises ``PermissionDenied``: Django then stops asking the other backends, sends
``user_login_failed`` and ``authenticate()`` returns ``None``, so even the right password does
not log in. Otherwise it returns ``None`` and the next backend checks the credentials. It
never authenticates anyone itself, so it has no ``get_user`` (sessions and ``force_login``
belong to the backend that did). ``TrackingMiddleware`` answers a refused request with 403.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied

from tracking.respond import enforce


class TrackingBackend:
    """An authentication backend that only refuses (see the module docstring)."""

    def authenticate(self, request: Any, username: Any = None, **credentials: Any) -> None:
        if username is None:
            username = credentials.get(get_user_model().USERNAME_FIELD)
        name = "" if username is None else str(username)
        block = enforce.check(request, name)
        if block is not None:
            enforce.mark_refused(request, block)
            raise PermissionDenied("refused by a block")
        return None
