"""``tracking reencrypt``: re-encrypt every row's headers/params under the first key.

Run it after putting a new key first in ``TRACKING_ENCRYPTION_KEYS`` (keep the old keys
after it until this finishes). Rows keep verifying: the row MAC covers the plaintext.
"""

from __future__ import annotations

from typing import cast

from django.db import transaction

from tracking.fields import Ciphertext, EncryptedJSONField
from tracking.integrity import crypto
from tracking.models import Activity

help = (
    "Re-encrypt headers/params of every activity under the first TRACKING_ENCRYPTION_KEYS "
    "key, in batches; reports how many rows were re-encrypted, already current, or unreadable."
)


def add_arguments(parser) -> None:
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--dry-run", action="store_true", help="count only")


def reencrypt(batch_size: int = 500, dry_run: bool = False) -> dict[str, int]:
    current = crypto.current_key_id()
    counts = {"rows": 0, "reencrypted": 0, "current": 0, "failed": 0}
    last = None
    names = ("headers", "params")
    while True:
        qs = Activity.objects.order_by("id").only("id", *names)
        if last is not None:
            qs = qs.filter(id__gt=last)
        rows = list(qs[:batch_size])
        if not rows:
            break
        last = rows[-1].id
        with transaction.atomic():
            for row in rows:
                counts["rows"] += 1
                stored = {n: row.__dict__.get(n) for n in names}
                if all(crypto.token_key_id(str(v)) == current for v in stored.values() if v):
                    counts["current"] += 1
                    continue
                try:
                    plain = {n: getattr(row, n) for n in names}  # decrypts with any key
                except crypto.DecryptionError:
                    counts["failed"] += 1
                    continue
                counts["reencrypted"] += 1
                if dry_run:
                    continue
                updates = {}
                for n in names:
                    field = cast(EncryptedJSONField, Activity._meta.get_field(n))
                    updates[n] = Ciphertext(crypto.encrypt(plain[n], field.aad(row)))
                Activity.objects.filter(pk=row.pk).update(**updates)
    return counts


def handle(command, *, batch_size: int = 500, dry_run: bool = False, **options) -> int:
    counts = reencrypt(batch_size=batch_size, dry_run=dry_run)
    verb = "would re-encrypt" if dry_run else "re-encrypted"
    command.stdout.write(
        f"{counts['rows']} rows: {verb} {counts['reencrypted']}, already current "
        f"{counts['current']}, unreadable {counts['failed']}"
    )
    if counts["failed"]:
        command.stderr.write(
            f"{counts['failed']} rows could not be decrypted with any configured key: add the "
            "key that encrypted them to TRACKING_ENCRYPTION_KEYS and run again."
        )
        return 1
    return 0
