"""``tracking demo [--users 50] [--days 4] [--seed N]``: fill the database with demo traffic.

The labelled simulator (``tracking.simulator.traffic``) writes a few days of realistic life for
``--users`` accounts, ending now, with account takeovers from far away and through VPN exits,
a credential-stuffing burst, slow password spraying and a night-time bulk export. Every
record is stored through the same recording path as live traffic
(``ActivityTracker.record_many`` → ``tracking.pipeline.ingest``: enrichment, redaction, encryption,
detection, sealing). The simulated accounts are created as Django users (unusable
passwords) so activities link to them.

Running it again does not duplicate anything: when activities are already stored, only the
time since the newest one is filled (quiet life, no new attacks) so the dashboard looks
current; ``--force`` fills the full period again (with new ids).
"""

from __future__ import annotations

import argparse
import math
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

from django.contrib.auth import get_user_model
from django.db.models import Max

from tracking.capture.tracker import get_tracker
from tracking.models import Activity, Counter
from tracking.pipeline.mapping import event_from_record
from tracking.simulator import traffic

UTC = dt_timezone.utc

help = "Fill the database with a few days of simulated traffic (with attacks) ending now."


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def add_arguments(parser) -> None:
    parser.add_argument(
        "--users", type=_positive, default=50, help="simulated accounts (default 50)"
    )
    parser.add_argument(
        "--days", type=_positive, default=4, help="days of traffic ending now (default 4)"
    )
    parser.add_argument("--seed", type=int, default=0, help="simulation seed (default 0)")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="how busy people are (default 1.0)"
    )
    parser.add_argument(
        "--force", action="store_true", help="fill the full period even if data exists"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress output")


def ensure_users(population) -> int:
    """Create the simulated accounts that do not exist yet; returns how many were created."""

    model = get_user_model()
    field = model.USERNAME_FIELD
    existing = set(
        model._default_manager.filter(
            **{f"{field}__in": [u.username for u in population]}
        ).values_list(field, flat=True)
    )
    users = []
    for sim in population:
        if sim.username in existing:
            continue
        user = model(**{field: sim.username}, email=sim.email, is_staff=sim.staff)
        user.set_unusable_password()
        users.append(user)
    # One statement, and no account-change activities: these accounts are simulated, their
    # creation is not part of the traffic the demo shows.
    model._default_manager.bulk_create(users)
    return len(users)


def fill(
    *,
    users: int = 50,
    days: int = 4,
    seed: int = 0,
    scale: float = 1.0,
    end: datetime | None = None,
    force: bool = False,
    progress=None,
) -> dict[str, int]:
    """Simulate and store traffic ending at ``end`` (default now); see the module docstring."""

    end = (end or datetime.now(UTC)).astimezone(UTC)
    start = end - timedelta(days=days)
    attacks = True
    filled = None if force else _filled_until()
    if filled is None and not force:
        # Where request traffic ended (account changes and request-less signals, e.g. the
        # demo's own admin account being created, carry no status).
        traffic_rows = Activity.objects.filter(status__isnull=False)
        filled = traffic_rows.aggregate(m=Max("timestamp"))["m"]
    if filled is not None:
        if end - filled < timedelta(minutes=5):
            return {"stored": 0, "duplicates": 0, "created_users": 0, "skipped": 1}
        # Top up: quiet life from where the last fill (or the newest activity) ended.
        start, attacks = max(start, filled), False
    span = max(1, math.ceil((end - start) / timedelta(days=1)))
    created = ensure_users(traffic.population(users, span, seed))
    tracker = get_tracker()
    stored = duplicates = 0
    batch: list = []

    def flush() -> None:
        nonlocal stored, duplicates, batch
        if batch:
            result = tracker.record_many(batch, batch_size=len(batch))
            stored += result.stored
            duplicates += result.duplicates
            batch = []
            if progress:
                progress(stored)

    for record in traffic.simulate(
        users=users, days=span, start=start, seed=seed, attacks=attacks, scale=scale
    ):
        if datetime.fromisoformat(record["timestamp"]) >= end:
            break
        batch.append(event_from_record(record))
        if len(batch) >= 500:
            flush()
    flush()
    _set_filled_until(end)
    return {"stored": stored, "duplicates": duplicates, "created_users": created, "skipped": 0}


# Where the last fill ended, so a re-run never simulates the same period twice. Kept as a
# Counter row of its own namespace (epoch microseconds): no schema of its own needed.
_MARK = {"namespace": "demo", "key": "filled_until"}


def _filled_until() -> datetime | None:
    row = Counter.objects.filter(**_MARK).first()
    return None if row is None else datetime.fromtimestamp(row.count / 1e6, UTC)


def _set_filled_until(end: datetime) -> None:
    Counter.objects.update_or_create(**_MARK, defaults={"count": int(end.timestamp() * 1e6)})


def handle(
    command,
    *,
    users: int = 50,
    days: int = 4,
    seed: int = 0,
    scale: float = 1.0,
    force: bool = False,
    quiet: bool = False,
    **options,
) -> int:
    def progress(n: int) -> None:
        if not quiet:
            command.stderr.write(f"  {n} activities stored...")

    result = fill(users=users, days=days, seed=seed, scale=scale, force=force, progress=progress)
    if result["skipped"]:
        command.stdout.write("demo traffic is up to date; nothing to add (use --force to refill)")
        return 0
    flagged = Activity.objects.filter(flagged=True).count()
    command.stdout.write(
        f"demo traffic: {result['stored']} activities stored ({result['duplicates']} already present), "
        f"{result['created_users']} users created; {flagged} flagged activities in total"
    )
    return 0
