"""Print a new random key for TRACKING_ENCRYPTION_KEYS or TRACKING_SEAL_KEYS."""

from __future__ import annotations

from tracking.integrity.crypto import generate_key

help = "Print a new random key (urlsafe base64 of 32 bytes)."


def add_arguments(parser) -> None:
    parser.add_argument("--count", type=int, default=1)


def handle(command, *, count: int = 1, **options) -> int:
    for _ in range(count):
        command.stdout.write(generate_key())
    return 0
