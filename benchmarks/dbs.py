"""Bench databases: one fresh database per variant and backend, migrated by the variant's
settings, so no run sees another's rows."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var" / "bench"
PG_ADMIN_URL = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres")
BACKENDS = ("sqlite", "postgresql")


def url(backend: str, name: str) -> str:
    if backend == "sqlite":
        return f"sqlite:///{VAR / (name + '.sqlite3')}"
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    return f"{base}/bench_{name}"


def pg_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            return True
    except Exception:
        return False


def _pg_admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql)


def drop(backend: str, name: str) -> None:
    if backend == "sqlite":
        for suffix in ("", "-wal", "-shm"):
            Path(str(VAR / (name + ".sqlite3")) + suffix).unlink(missing_ok=True)
    else:
        _pg_admin(f'DROP DATABASE IF EXISTS "bench_{name}" WITH (FORCE)')


def env_for(backend: str, name: str, settings: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(ROOT),
        DJANGO_SETTINGS_MODULE=settings,
        BENCH_DATABASE_URL=url(backend, name),
        **extra,
    )
    return env


def fresh(backend: str, name: str, settings: str) -> str:
    """Drop, create and migrate the database ``name`` on ``backend``; returns its URL."""
    VAR.mkdir(parents=True, exist_ok=True)
    drop(backend, name)
    if backend == "postgresql":
        _pg_admin(f'CREATE DATABASE "bench_{name}"')
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "-v", "0", "--no-input"],
        env=env_for(backend, name, settings),
        check=True,
        cwd=ROOT,
    )
    return url(backend, name)


def migrate(backend: str, name: str, settings: str) -> None:
    """Apply pending migrations to an existing bench database (a reused load picks up new
    tables and indexes without reloading its rows)."""
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "-v", "0", "--no-input"],
        env=env_for(backend, name, settings),
        check=True,
        cwd=ROOT,
    )


def count(backend: str, name: str, table: str, where: str = "", params: tuple = ()) -> int:
    """Rows in ``table`` of the bench database (0 when the table does not exist)."""
    sql = f"SELECT count(*) FROM {table}" + (f" WHERE {where}" if where else "")
    try:
        if backend == "sqlite":
            with sqlite3.connect(VAR / (name + ".sqlite3"), timeout=30) as conn:
                return conn.execute(sql.replace("%s", "?"), params).fetchone()[0]
        import psycopg

        with psycopg.connect(url(backend, name)) as conn:
            return conn.execute(sql, params).fetchone()[0]
    except (sqlite3.OperationalError, Exception) as exc:  # missing table: nothing logged
        if "does not exist" in str(exc) or "no such table" in str(exc):
            return 0
        raise
