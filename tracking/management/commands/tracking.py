"""``python manage.py tracking <subcommand>``: one entry point for every operator task.

Each subcommand lives in ``tracking.cli.<module>`` and exposes ``help``,
``add_arguments(parser)`` and ``handle(command, **options)`` (returning an exit code or None).
"""

from __future__ import annotations

import importlib
import sys

from django.core import checks
from django.core.management.base import BaseCommand, CommandError

from tracking.conf import CHECKS_TAG

SUBCOMMANDS: dict[str, str] = {
    "import": "tracking.cli.import_",
    "export": "tracking.cli.export",
    "train": "tracking.cli.train",
    "verify": "tracking.cli.verify",
    "seal": "tracking.cli.seal",
    "purge": "tracking.cli.purge",
    "doctor": "tracking.cli.doctor",
    "keygen": "tracking.cli.keygen",
    "reencrypt": "tracking.cli.reencrypt",
    "demo": "tracking.cli.demo",
    "flush": "tracking.cli.flush",
    "postgres": "tracking.cli.postgres",
    "partitions": "tracking.cli.partitions",
    "forward": "tracking.cli.forward",
}


def _load(name: str):
    try:
        return importlib.import_module(SUBCOMMANDS[name])
    except ModuleNotFoundError as exc:
        if exc.name == SUBCOMMANDS[name]:
            return None
        raise


class Command(BaseCommand):
    help = "Activity tracking operations: import, export, train, verify, seal, purge, doctor, ..."
    # The package's own checks (settings, keys, detectors) and the models' before any
    # subcommand. The URL and admin checks import every view of the project (~20 MiB in
    # each process of a parallel export) for commands that serve none: `manage.py check`
    # runs them.
    requires_system_checks = [CHECKS_TAG, checks.Tags.models]

    def add_arguments(self, parser) -> None:
        sub = parser.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
        sub.required = True
        for name in SUBCOMMANDS:
            module = _load(name)
            if module is None:
                continue
            p = sub.add_parser(
                name, help=getattr(module, "help", ""), description=getattr(module, "help", "")
            )
            module.add_arguments(p)

    def handle(self, *args, subcommand: str, **options):
        module = _load(subcommand)
        if module is None:
            raise CommandError(f"unknown subcommand {subcommand!r}")
        code = module.handle(self, **options)
        if code:
            sys.exit(int(code))
