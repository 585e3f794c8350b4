"""``tracking forward``: deliver pending alerts and forward what is new, now (for
``TRACKING_DELIVERY = "manual"``, cron, or after an outage); ``--loop`` keeps doing so;
``--retry-dead`` gives the alert channels' dead letters new attempts first.
``tracking forward --since ... [--until ...] [--forwarder NAME]`` replays a time range to the
forwarders (every activity stored in it, and the seals made then) without moving their
positions: a log server that lost data gets it again.
"""

from __future__ import annotations

import time

from django.core.management.base import CommandError

from tracking.cli.export import parse_when
from tracking.conf import tracking_settings
from tracking.delivery import config, runner
from tracking.delivery.http import DeliveryError
from tracking.forwarding import dispatch
from tracking.models import PendingAlert

help = "Deliver alerts and forward now, or replay a time range to the forwarders (--since)."


def add_arguments(parser) -> None:
    parser.add_argument(
        "--since",
        type=parse_when,
        default=None,
        help="replay from this ISO date/time (UTC if naive)",
    )
    parser.add_argument(
        "--until", type=parse_when, default=None, help="replay up to (before) this date/time"
    )
    parser.add_argument(
        "--forwarder",
        dest="forwarders",
        action="append",
        default=None,
        help="only this forwarder (its name; repeatable)",
    )
    parser.add_argument("--no-seals", action="store_true", help="replay activities only")
    parser.add_argument(
        "--loop", action="store_true", help="keep delivering every TRACKING_DELIVERY_INTERVAL s"
    )
    parser.add_argument(
        "--retry-dead",
        action="store_true",
        help="give the alert channels' dead letters new attempts before delivering",
    )


def _selected(names: list[str] | None) -> list[config.Forwarder]:
    available = config.forwarders()
    if not names:
        return available
    known = {f.name: f for f in available}
    missing = [n for n in names if n not in known]
    if missing:
        raise CommandError(
            f"no forwarder named {', '.join(missing)} (configured: {', '.join(known) or 'none'})"
        )
    return [known[n] for n in names]


def handle(
    command,
    *,
    since=None,
    until=None,
    forwarders=None,
    no_seals: bool = False,
    loop: bool = False,
    retry_dead: bool = False,
    **options,
) -> int:
    problems = config.problems()
    for setting, problem in problems:
        command.stderr.write(f"{setting}: {problem}")
    if since is None:
        if until is not None or forwarders:
            raise CommandError("--until and --forwarder go with --since (a replay)")
        if retry_dead:
            revived = PendingAlert.objects.filter(status=PendingAlert.Status.DEAD).update(
                status=PendingAlert.Status.PENDING, attempts=0, next_attempt=None
            )
            command.stdout.write(f"dead letters given new attempts: {revived}")
        while True:
            report = runner.deliver()
            command.stdout.write(
                f"alerts sent: {report.alerts_sent}, lines forwarded: {report.forwarded}"
            )
            for failure in report.failures:
                command.stderr.write(f"failed: {failure}")
            if not loop:
                return 1 if report.failures else 0
            time.sleep(float(tracking_settings.DELIVERY_INTERVAL))
    if until is not None and until <= since:
        raise CommandError("--until must be after --since")
    selected = _selected(forwarders)
    if not selected:
        raise CommandError("TRACKING_FORWARDERS has no valid entry: nothing to replay to")
    code = 0
    for fwd in selected:
        try:
            sent = dispatch.replay(fwd, since, until, seals=not no_seals)
        except (DeliveryError, OSError) as exc:
            command.stderr.write(f"{fwd.name}: replay stopped: {exc}")
            code = 1
            continue
        command.stdout.write(f"{fwd.name}: {sent} lines replayed")
    return code
