"""The oldest supported Python and Django: ISO timestamps as Python 3.11 reads them, and the
SQLite backend's init_command / transaction_mode OPTIONS (native since Django 5.1)."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from datetime import timezone as dt_timezone

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db.utils import load_backend

from tracking.compat import parse_iso_datetime
from tracking.events import Event
from tracking.models import Activity
from tracking.pipeline.ingest import ingest

UTC = dt_timezone.utc
MOMENT = datetime(2026, 1, 2, 3, 4, 5, 120000, tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    [
        "2026-01-02T03:04:05.12+00:00",  # two fraction digits: refused by Python 3.10's parser
        "2026-01-02T03:04:05.1200+00:00",
        "2026-01-02T03:04:05.120+0000",
        "2026-01-02 03:04:05.120000+00:00",
        "2026-01-02T04:04:05.12+01:00",
    ],
)
def test_iso_text_is_read_as_python_311_reads_it(text):
    assert parse_iso_datetime(text) == MOMENT


@pytest.mark.parametrize("text", ["", "yesterday", "2026-13-02T03:04:05", "2026-01-02T25:00"])
def test_text_that_is_no_datetime_is_a_value_error(text):
    with pytest.raises(ValueError):
        parse_iso_datetime(text)


@pytest.mark.django_db
def test_imported_event_with_a_short_fraction_is_stored():
    event = Event.from_dict(
        {"type": "AUTH", "timestamp": "2026-01-02T03:04:05.12Z", "endpoint": "/login/"}
    )
    assert event.timestamp == MOMENT
    result = ingest([{"type": "AUTH", "timestamp": "2026-01-02T03:04:05.12+0000", "id": event.id}])
    assert result.stored == 1
    assert Activity.objects.get(pk=event.id).timestamp == MOMENT


@pytest.fixture
def own_db(django_db_blocker):
    """Connections to the test's own SQLite files (not the test database)."""
    with django_db_blocker.unblock():
        yield


def _wrapper(path, **options):
    backend = load_backend("tracking.compat.sqlite3")
    settings = {
        "ENGINE": "tracking.compat.sqlite3",
        "NAME": str(path),
        "OPTIONS": options,
        "ATOMIC_REQUESTS": False,
        "AUTOCOMMIT": True,
        "CONN_MAX_AGE": 0,
        "CONN_HEALTH_CHECKS": False,
        "TIME_ZONE": None,
        "USER": "",
        "PASSWORD": "",
        "HOST": "",
        "PORT": "",
        "TEST": {},
    }
    return backend.DatabaseWrapper(settings, alias="compat")


def _other_writer_is_locked_out(path) -> bool:
    other = sqlite3.connect(str(path), timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError as exc:
        assert "locked" in str(exc)
        return True
    finally:
        other.close()


def test_sqlite_backend_applies_init_command_and_immediate_transactions(tmp_path, own_db):
    path = tmp_path / "compat.sqlite3"
    conn = _wrapper(
        path,
        init_command="PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        transaction_mode="IMMEDIATE",
        timeout=5,
    )
    try:
        with conn.cursor() as cursor:
            cursor.execute("PRAGMA journal_mode")
            assert cursor.fetchone()[0] == "wal"
            cursor.execute("CREATE TABLE t (x INTEGER)")
        with _atomic(conn):
            # BEGIN IMMEDIATE took the write lock before any statement ran.
            assert _other_writer_is_locked_out(path)
        assert not _other_writer_is_locked_out(path)
    finally:
        conn.close()


def test_sqlite_backend_without_options_begins_deferred(tmp_path, own_db):
    path = tmp_path / "plain.sqlite3"
    conn = _wrapper(path, timeout=5)
    try:
        with conn.cursor() as cursor:
            cursor.execute("PRAGMA journal_mode")
            assert cursor.fetchone()[0] == "delete"
        with _atomic(conn):
            assert not _other_writer_is_locked_out(path)
    finally:
        conn.close()


class _atomic:
    """``transaction.atomic`` on a connection that is not in ``connections``."""

    def __init__(self, conn) -> None:
        self.conn = conn

    def __enter__(self):
        self.conn.set_autocommit(False, force_begin_transaction_with_broken_autocommit=True)
        return self

    def __exit__(self, *exc):
        self.conn.rollback()
        self.conn.set_autocommit(True)


def test_unknown_transaction_mode_is_refused(tmp_path, own_db):
    conn = _wrapper(tmp_path / "bad.sqlite3", transaction_mode="SOMETIMES")
    with pytest.raises(ImproperlyConfigured):
        conn.ensure_connection()
    conn.close()
