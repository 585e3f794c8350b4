"""Django's SQLite backend with the ``init_command`` and ``transaction_mode`` OPTIONS on Django 4.2.

Django 5.1 added both options; older releases pass OPTIONS straight to ``sqlite3.connect``,
which rejects them. Several writers share a SQLite file here (request threads, the background
writer, management commands): WAL lets readers run beside the writer, and ``BEGIN IMMEDIATE``
makes writers wait for the lock instead of failing with "database is locked". Use
``"ENGINE": "tracking.compat.sqlite3"`` on Django 4.2; on Django 5.1 and later this backend is
Django's own, unchanged.
"""

from __future__ import annotations

from typing import Any

import django
from django.core.exceptions import ImproperlyConfigured
from django.db.backends.sqlite3 import base

NATIVE_OPTIONS = django.VERSION >= (5, 1)


class DatabaseWrapper(base.DatabaseWrapper):
    """Runs ``init_command`` on each new connection and begins ``transaction_mode`` transactions."""

    def get_connection_params(self) -> dict[str, Any]:
        params = super().get_connection_params()
        if NATIVE_OPTIONS:
            return params
        self._init_command: str = params.pop("init_command", "") or ""
        mode = params.pop("transaction_mode", None)
        if mode not in (None, "DEFERRED", "IMMEDIATE", "EXCLUSIVE"):
            raise ImproperlyConfigured(
                f"transaction_mode must be DEFERRED, IMMEDIATE or EXCLUSIVE (got {mode!r})."
            )
        self._begin = f"BEGIN {mode}" if mode else "BEGIN"
        return params

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        conn = super().get_new_connection(conn_params)
        if not NATIVE_OPTIONS:
            for statement in self._init_command.split(";"):
                if statement.strip():
                    conn.execute(statement)
        return conn

    def _start_transaction_under_autocommit(self) -> None:
        if NATIVE_OPTIONS:
            super()._start_transaction_under_autocommit()  # type: ignore[misc]  # private, not in django-stubs
        else:
            self.cursor().execute(self._begin)
