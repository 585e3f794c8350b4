"""``tracking postgres install-trigger|remove-trigger|status`` (PostgreSQL only).

The trigger makes the database itself refuse what only an attacker (or a mistake) would do to
sealed activities: UPDATE of their recorded content, seq or MAC, DELETE, and TRUNCATE of the
table. The application's own deletion path (``tracking.integrity.sealing.delete_activities`` and
``tracking purge``) sets ``tracking.allow_delete`` for its transaction only (``SET LOCAL``
semantics via ``set_config(..., true)``) and passes. Review columns (``flagged``,
``review_status``, ``reviewed_by_id``, ``reviewed_at``), ``user_id`` (``SET_NULL`` when a user is
deleted), ``geo_pending``, the encrypted ``headers``/``params`` (re-encryption under a new key;
their plaintext stays covered by the MAC) and seq assignment of unsealed rows stay allowed.

A database superuser can still drop the trigger: it raises the bar, ``tracking verify`` is the
proof. On a partitioned table the row trigger is cloned to every partition, present and future.
"""

from __future__ import annotations

from django.db import connection, transaction

from tracking.integrity.macs import CANONICAL_FIELDS, NULLABLE_ON_DELETE
from tracking.integrity.sealing import ALLOW_DELETE_GUC
from tracking.models import Activity

help = "Install, remove or show the PostgreSQL trigger protecting sealed activities."

TABLE = Activity._meta.db_table
FUNCTION = "tracking_activity_guard"
ROW_TRIGGER = "tracking_activity_guard"
TRUNCATE_TRIGGER = "tracking_activity_guard_truncate"
# Ciphertext may be re-encrypted (`tracking reencrypt`); the MAC covers the plaintext.
MUTABLE_CANONICAL = {"headers", "params"}


def _q(name: str) -> str:
    return connection.ops.quote_name(name)


def _guarded_columns() -> list[str]:
    # A deleted account nulls user_id (the row MAC still binds a non-null one).
    skip = MUTABLE_CANONICAL | set(NULLABLE_ON_DELETE)
    names = [n for n in CANONICAL_FIELDS if n not in skip] + ["seq", "mac"]
    # get_field() is typed as possibly a relation; these names are concrete columns.
    return [Activity._meta.get_field(n).column for n in names]  # type: ignore[union-attr,misc]


def function_sql() -> str:
    changed = " OR ".join(f"NEW.{_q(c)} IS DISTINCT FROM OLD.{_q(c)}" for c in _guarded_columns())
    allowed = f"coalesce(current_setting('{ALLOW_DELETE_GUC}', true), '') = 'on'"
    return f"""
CREATE OR REPLACE FUNCTION {FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        IF NOT {allowed} THEN
            RAISE EXCEPTION 'tracking: TRUNCATE of {TABLE} is refused (sealed audit log)'
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        RETURN NULL;
    END IF;
    IF TG_OP = 'DELETE' THEN
        IF OLD.seq IS NOT NULL AND NOT {allowed} THEN
            RAISE EXCEPTION 'tracking: sealed activity % (seq %) can only be deleted through the application (tracking.integrity.sealing.delete_activities / tracking purge)', OLD.id, OLD.seq
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        RETURN OLD;
    END IF;
    IF OLD.seq IS NOT NULL AND ({changed}) THEN
        RAISE EXCEPTION 'tracking: recorded content of sealed activity % (seq %) cannot be changed', OLD.id, OLD.seq
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$fn$;
"""


def is_postgres() -> bool:
    return connection.vendor == "postgresql"


def installed() -> bool:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE c.relname = %s AND pg_catalog.pg_table_is_visible(c.oid) AND t.tgname IN (%s, %s)",
            [TABLE, ROW_TRIGGER, TRUNCATE_TRIGGER],
        )
        return cur.fetchone()[0] == 2


def install_trigger() -> None:
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(function_sql())
        cur.execute(f"DROP TRIGGER IF EXISTS {ROW_TRIGGER} ON {_q(TABLE)}")
        cur.execute(f"DROP TRIGGER IF EXISTS {TRUNCATE_TRIGGER} ON {_q(TABLE)}")
        cur.execute(
            f"CREATE TRIGGER {ROW_TRIGGER} BEFORE UPDATE OR DELETE ON {_q(TABLE)} "
            f"FOR EACH ROW EXECUTE FUNCTION {FUNCTION}()"
        )
        cur.execute(
            f"CREATE TRIGGER {TRUNCATE_TRIGGER} BEFORE TRUNCATE ON {_q(TABLE)} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {FUNCTION}()"
        )


def remove_trigger() -> None:
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(f"DROP TRIGGER IF EXISTS {ROW_TRIGGER} ON {_q(TABLE)}")
        cur.execute(f"DROP TRIGGER IF EXISTS {TRUNCATE_TRIGGER} ON {_q(TABLE)}")
        cur.execute(f"DROP FUNCTION IF EXISTS {FUNCTION}()")


def add_arguments(parser) -> None:
    parser.add_argument("action", choices=["install-trigger", "remove-trigger", "status"])


def handle(command, *, action: str, **options) -> int:
    if not is_postgres():
        message = (
            f"tracking postgres {action}: the protective trigger is PostgreSQL-only; this "
            f"database is {connection.vendor}. Tamper evidence does not depend on it: "
            "`tracking verify` checks the hash chain on every database."
        )
        if action == "status":
            command.stdout.write(message)
            return 0
        command.stderr.write(message)
        return 2
    if action == "install-trigger":
        install_trigger()
        command.stdout.write(
            f"Installed trigger {ROW_TRIGGER} on {TABLE}: sealed rows can no longer be updated "
            "or deleted outside the application's deletion path."
        )
    elif action == "remove-trigger":
        remove_trigger()
        command.stdout.write(f"Removed trigger {ROW_TRIGGER} from {TABLE}.")
    else:
        state = "installed" if installed() else "not installed"
        command.stdout.write(f"Trigger {ROW_TRIGGER} on {TABLE}: {state}.")
    return 0
