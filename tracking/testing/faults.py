"""Database faults for tests: statements on the tracking tables fail (or wait) the way they do
in a real outage, at the database boundary, with nothing of the write path patched.

``database_fault(action)`` installs a Django execute wrapper
(``connection.execute_wrapper``) on this thread's connections and on every connection opened
meanwhile, in any thread (the writer thread, a Celery worker). Before each statement whose SQL
``match``es (by default: one touching a ``tracking_`` table) it calls ``action(sql, params)``,
which may raise or wait. ``refuse`` raises ``OperationalError`` as a refused connection
would.

Not seen: PostgreSQL ``COPY`` (batches of ``copyinsert.MIN_ROWS`` rows or more) and
connections another thread opened before the fault started and keeps open.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.db import OperationalError, connections
from django.db.backends.signals import connection_created

TRACKING_TABLE = re.compile(r"\btracking_\w+", re.IGNORECASE)


def touches_tracking_tables(sql: str) -> bool:
    return bool(TRACKING_TABLE.search(sql))


def inserts_activities(sql: str) -> bool:
    """An ``INSERT`` of activity rows (a batch being written)."""
    return re.match(r'\s*INSERT INTO "?tracking_activity"?\s', sql, re.IGNORECASE) is not None


class DatabaseFault:
    """``start()``/``stop()`` (or use ``database_fault`` as a context manager)."""

    def __init__(
        self,
        action: Callable[[str, object], None],
        match: Callable[[str], bool] = touches_tracking_tables,
    ) -> None:
        self.action = action
        self.match = match
        self.calls = 0
        self._lock = threading.Lock()
        self._wrapped: list = []

    def __call__(self, execute, sql, params, many, context):
        if self.match(str(sql)):
            with self._lock:
                self.calls += 1
            self.action(str(sql), params)
        return execute(sql, params, many, context)

    def _install(self, connection) -> None:
        with self._lock:
            if self not in connection.execute_wrappers:
                connection.execute_wrappers.append(self)
                self._wrapped.append(connection)

    def _on_connect(self, sender, connection, **kwargs) -> None:
        self._install(connection)

    def start(self) -> DatabaseFault:
        connection_created.connect(self._on_connect, weak=False)
        for conn in connections.all():
            self._install(conn)
        return self

    def stop(self) -> None:
        connection_created.disconnect(self._on_connect)
        with self._lock:
            for conn in self._wrapped:
                if self in conn.execute_wrappers:
                    conn.execute_wrappers.remove(self)
            self._wrapped.clear()


@contextmanager
def database_fault(
    action: Callable[[str, object], None], match: Callable[[str], bool] = touches_tracking_tables
) -> Iterator[DatabaseFault]:
    fault = DatabaseFault(action, match).start()
    try:
        yield fault
    finally:
        fault.stop()


def refuse(sql: str, params: object) -> None:
    raise OperationalError("could not connect to server: Connection refused")
