"""Rows stored before their verdict: the writes of ``ingest``'s two stages (its docstring).

- ``store(pairs)``: the durable stage's write (``judged=False``, one statement);
- ``claim(rows)``: the judge stage's claim of the rows still pending;
- ``mark_judged(rows, changed)``: the judge stage's write of the verdicts.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from django.db import connection

from detectors.base import SEVERITY_RANK
from tracking.events import Event
from tracking.integrity import macs as integrity
from tracking.models import Activity
from tracking.pipeline.rows import merge_verdict
from tracking.storage import copyinsert

# What detection sets on an activity (``runner.apply_verdict``).
VERDICT_FIELDS = ("tags", "risk_score", "severity", "flagged", "review_status")


def verdict_of(act: Activity) -> tuple:
    return tuple(
        tuple(v) if isinstance(v, list) else v for v in (getattr(act, f) for f in VERDICT_FIELDS)
    )


def store(pairs: Sequence[tuple[Event | None, Activity]]) -> None:
    """The durable stage's write: the rows as built (with what their events carry: a capture
    time tag), MAC'd, ``judged=False``, in ONE statement (a one-row INSERT, or COPY for large
    batches): autocommit makes it durable without BEGIN/COMMIT round trips, and it takes no
    lock another request waits for (no rollup, profile or advisory lock)."""
    acts = []
    for event, act in pairs:
        merge_verdict(act, (event.verdict if event is not None else None) or {})
        if act.severity not in SEVERITY_RANK:
            act.severity = ""
        act.judged = False
        act.mac = integrity.row_mac(act)
        acts.append(act)
    copyinsert.insert(Activity, acts)


def claim(acts: list[Activity]) -> set[uuid.UUID]:
    """Ids of ``acts`` still pending that this transaction now holds. PostgreSQL: row locks,
    skipping rows another judge holds (it judges them; a row it already committed no longer
    matches ``judged=False``). Elsewhere (SQLite) a no-op UPDATE takes the database's write
    lock first, so a concurrent judge waits and then finds the rows judged."""
    ids = [a.id for a in acts]
    qs = Activity.objects.filter(
        id__in=ids,
        judged=False,
        # Lets PostgreSQL look only in the partitions of the batch's months.
        timestamp__gte=min(a.timestamp for a in acts),
        timestamp__lte=max(a.timestamp for a in acts),
    )
    if connection.vendor == "postgresql":
        return set(qs.select_for_update(skip_locked=True).values_list("id", flat=True))
    qs.update(judged=False)
    return set(qs.values_list("id", flat=True))


def mark_judged(acts: list[Activity], changed: list[Activity]) -> None:
    """The judge stage's write: rows whose verdict changed (those with findings) get their
    verdict fields, recomputed MAC and ``judged`` in one UPDATE each; one UPDATE marks the
    others judged. No row is written twice."""
    rewritten = {a.id for a in changed}
    unchanged = [a for a in acts if a.id not in rewritten]
    if unchanged:
        Activity.objects.filter(
            id__in=[a.id for a in unchanged],
            timestamp__gte=min(a.timestamp for a in unchanged),
            timestamp__lte=max(a.timestamp for a in unchanged),
        ).update(judged=True)
    if changed:
        write_verdicts(changed)


def write_verdicts(changed: list[Activity]) -> None:
    """The verdict fields, MAC and ``judged`` of ``changed``: one parameterised UPDATE per
    row, sent with ``executemany`` (psycopg pipelines them). ``bulk_update``'s CASE
    expressions cost more Python per row than the whole detection of the row."""
    ops = connection.ops
    concrete = {f.name: f for f in Activity._meta.concrete_fields}
    fields = [concrete[name] for name in (*VERDICT_FIELDS, "mac", "judged")]
    key = [concrete["id"], concrete["timestamp"]]
    # Only quoted column and table names of the model are formatted in; values are parameters.
    sql = "UPDATE {} SET {} WHERE {} = %s AND {} = %s".format(  # noqa: S608
        ops.quote_name(Activity._meta.db_table),
        ", ".join(f"{ops.quote_name(str(f.column))} = %s" for f in fields),
        *(ops.quote_name(str(f.column)) for f in key),
    )
    params = [
        [f.get_db_prep_save(getattr(act, f.attname), connection) for f in (*fields, *key)]
        for act in changed
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)
