"""Raw-SQL helpers for the integrity tests: tamper with the database behind the app's back."""

from __future__ import annotations

import io

from django.core.management import call_command
from django.db import connection

from tracking.models import Activity


def db_id(pk) -> object:
    """The primary key as the backend stores it (SQLite: 32 hex chars; PostgreSQL: uuid)."""
    return pk.hex if connection.vendor == "sqlite" else pk


def sql(statement: str, params=()) -> int:
    with connection.cursor() as cur:
        cur.execute(statement, list(params))
        return cur.rowcount


def run_tracking(*args) -> tuple[int, str]:
    """Run ``manage.py tracking <args>``; returns (exit code, stdout + stderr)."""
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("tracking", *args, stdout=out, stderr=err)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, out.getvalue() + err.getvalue()


def insert_copy(source: Activity, new_id, *, keep_seq: bool = False, mac: str | None = None):
    """INSERT a row by raw SQL copying ``source``'s columns under ``new_id``."""
    cols = [f.column for f in Activity._meta.concrete_fields]
    select = []
    params = []
    for c in cols:
        if c == "id":
            select.append("%s")
            params.append(db_id(new_id))
        elif c == "seq" and not keep_seq:
            select.append("NULL")
        elif c == "mac" and mac is not None:
            select.append("%s")
            params.append(mac)
        else:
            select.append(connection.ops.quote_name(c))
    params.append(db_id(source.pk))
    quoted = ", ".join(connection.ops.quote_name(c) for c in cols)
    sql(
        f"INSERT INTO tracking_activity ({quoted}) SELECT {', '.join(select)} "
        "FROM tracking_activity WHERE id = %s",
        params,
    )
