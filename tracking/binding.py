"""A psycopg 3 cursor of Django's PostgreSQL connection that binds values server-side.

Django's psycopg 3 backend binds parameters client-side by default (``ClientCursor``: each
value quoted into the statement text), which for an array of ids or a column of a batch
costs more CPU than the statement itself. This cursor sends them as parameters (unnamed
statements: nothing a transaction-mode pooler could lose), in the connection's current
transaction. It bypasses Django's cursor wrapper, so where Django must see the statement it is
not used: statements logged (``DEBUG``, ``CaptureQueriesContext``) or wrapped
(``connection.execute_wrapper``: instrumentation, fault injection). Callers fall back to
Django's cursor then, and on any other backend or driver, and run the cursor inside
``connection.wrap_database_errors`` so failures raise Django's exceptions.
"""

from __future__ import annotations

import weakref
from typing import Any

try:
    import psycopg
except ImportError:  # psycopg2 or another backend
    psycopg = None  # type: ignore[assignment]


def _raw(conn: Any) -> Any:
    """The open psycopg 3 connection under Django's ``conn``, or None where Django's own
    cursor must be used (see the module)."""
    if psycopg is None or conn.vendor != "postgresql":
        return None
    if conn.execute_wrappers or conn.queries_logged:
        return None
    conn.ensure_connection()
    raw = conn.connection
    return raw if isinstance(raw, psycopg.Connection) else None


def server_bound_cursor(conn: Any) -> Any:
    """The cursor, or None where Django's own cursor must be used (see the module)."""
    raw = _raw(conn)
    return None if raw is None else psycopg.Cursor(raw)


# One kept cursor per psycopg connection for ``reusable_cursor``: making a cursor costs about
# as much CPU as a small INSERT's own client work. Weak keys: a connection Django closes
# (CONN_MAX_AGE, an error) takes its cursor with it.
_kept: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def reusable_cursor(conn: Any) -> Any:
    """``server_bound_cursor``, kept for the connection and not to be closed by the caller:
    for one statement run on every request (the synchronous path's intake INSERT). Django's
    connections belong to one thread, so each cursor is used by one thread at a time."""
    raw = _raw(conn)
    if raw is None:
        return None
    cursor = _kept.get(raw)
    if cursor is None or cursor.closed:
        cursor = _kept[raw] = psycopg.Cursor(raw)
    return cursor
