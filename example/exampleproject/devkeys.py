"""Per-checkout development keys for the example, kept in ``example/var/dev-keys.json``.

Used only when the environment gives no keys: a fresh clone gets its own random keys on the
first start (created once, atomically, readable by the owner only) and keeps them, so data
written by ``make demo`` stays readable. ``example/var/`` is git-ignored: never commit it.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from pathlib import Path


def _new_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def load(path: Path) -> dict[str, str]:
    """The keys in ``path``, created on first use."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        keys = {
            "SECRET_KEY": secrets.token_urlsafe(50),
            "ENCRYPTION_KEY": _new_key(),
            "SEAL_KEY": _new_key(),
        }
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(keys, fh)
        try:
            # link() fails if another process won the race: then read theirs.
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    with open(path) as fh:
        return json.load(fh)
