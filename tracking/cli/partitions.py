"""``tracking partitions``: monthly partitions of the activity table (PostgreSQL).

``ensure [--months-ahead N]`` creates the partitions up to N months ahead (and moves rows
waiting in the default partition into their month); ``list`` shows them. Run ``ensure`` from
cron or Celery beat at least monthly; the writer also calls it. Dropping old months is
retention's job (``tracking purge``), which seals and checkpoints first.
"""

from __future__ import annotations

from django.db import DEFAULT_DB_ALIAS, connections

from tracking.storage import partitioning

help = "PostgreSQL time partitions of the activity table: ensure (create ahead) or list."


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    ensure = sub.add_parser("ensure", help="Create monthly partitions ahead of time.")
    ensure.add_argument(
        "--months-ahead",
        type=int,
        default=None,
        help="Months after the current one to create (default TRACKING_PARTITION_MONTHS_AHEAD).",
    )
    ensure.add_argument("--database", default=DEFAULT_DB_ALIAS)
    listing = sub.add_parser("list", help="List the partitions and their row estimates.")
    listing.add_argument("--database", default=DEFAULT_DB_ALIAS)


def handle(command, *, action: str, database: str = DEFAULT_DB_ALIAS, **options) -> int:
    out, err = command.stdout, command.stderr
    vendor = connections[database].vendor
    if not partitioning.is_partitioned(database):
        reason = (
            f"the {vendor} backend has no table partitioning"
            if vendor != "postgresql"
            else "tracking_activity is not partitioned (TRACKING_PARTITIONING is off "
            "or migration 0002 has not run)"
        )
        out.write(f"Nothing to do: {reason}.")
        return 0
    if action == "ensure":
        months = options.get("months_ahead")
        if months is not None and months < 0:
            err.write("--months-ahead must be 0 or more.")
            return 2
        created = partitioning.ensure_partitions(months, using=database, refresh=True)
        for name in created:
            out.write(f"created {name}")
        out.write(f"{len(created)} partition(s) created.")
        return 0
    for p in partitioning.list_partitions(database):
        span = "DEFAULT" if p.is_default else f"{p.start:%Y-%m-%d} .. {p.end:%Y-%m-%d}"
        out.write(f"{p.name}\t{span}")
    return 0
