"""``tracking flush``: write everything that is waiting (writer queue, spool, the events a
dead process left in the intake, owed geo)."""

from __future__ import annotations

import json

from tracking.enrich.geo import retry_pending_geo
from tracking.pipeline import housekeeping, writer

help = (
    "Write pending activities now: drain this process's writer queue, replay the durable "
    "spool (after a database outage), store the events a dead process left in the intake "
    "(with their verdict) and retry owed geolocation. Prints a JSON summary."
)


def add_arguments(parser) -> None:
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the queue")
    parser.add_argument("--no-geo", action="store_true", help="skip retrying owed geolocation")


def handle(command, *, timeout: float = 30.0, no_geo: bool = False, **options) -> int:
    drained = writer.flush(timeout)
    result = housekeeping.replay_spool()
    # Intake rows past the grace (their process died); younger ones are their writer's.
    judged = housekeeping.judge_unjudged()
    geo_done = 0 if no_geo else retry_pending_geo()
    summary = {
        "queue_drained": drained,
        "spool": {
            "segments": result.segments,
            "events": result.events,
            "stored": result.stored,
            "duplicates": result.duplicates,
            "rejected": result.rejected,
            "corrupt": result.corrupt,
            "remaining": result.remaining,
        },
        "judged": judged,
        "geo_enriched": geo_done,
        "errors": result.errors[:20],
    }
    command.stdout.write(json.dumps(summary, indent=2))
    for err in result.errors:
        command.stderr.write(err)
    return 1 if result.remaining or not drained else 0
