"""The 1M-row query benchmark's loader (benchmarks/loader.py) makes rows the table accepts
as its own: every column the model has, a valid MAC, payloads that decrypt under their row's
id. A field added to the model or to the MAC must reach it (it once stopped the benchmark)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

from benchmarks.loader import activities
from tracking.integrity import crypto
from tracking.integrity.macs import row_ok
from tracking.models import Activity


def test_loader_rows_carry_every_column_and_a_valid_mac():
    table = Activity._meta.db_table
    people = [(1, "bench1"), (2, "bench2")]
    rows = list(
        activities(
            200,
            people=people,
            homes={},
            start=datetime(2026, 1, 1, tzinfo=timezone.utc),
            step=timedelta(minutes=1),
            rng=random.Random(3),
            table=table,
        )
    )
    columns = {f.attname for f in Activity._meta.concrete_fields}
    for a in rows:
        assert columns <= set(vars(a)), columns - set(vars(a))
        headers = crypto.decrypt(a.headers, f"{table}.headers.{a.id}")
        params = crypto.decrypt(a.params, f"{table}.params.{a.id}")
        plain = Activity(
            **{
                **{c: getattr(a, c) for c in columns},
                "headers": headers,
                "params": params,
                "tags": [t for t in a.tags.split(",") if t],
            }
        )
        assert row_ok(plain), a.id
    assert {a.outcome for a in rows} == {"success", "failure"}
