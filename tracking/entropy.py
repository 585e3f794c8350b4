"""Random bytes from the OS's CSPRNG, read in blocks.

``os.urandom`` is one system call per call; on a virtual machine a request's event id and its
journal line's AES-GCM nonce each paid one. The bytes are the same CSPRNG output, read 4 KiB
at a time per thread. A forked child (gunicorn ``--preload``, Celery's prefork pool) starts
with no block: it must never hand out bytes its parent handed out too — a repeated GCM nonce
under one key gives the key stream away.
"""

from __future__ import annotations

import os
import threading

BLOCK = 4096

_local = threading.local()


def random_bytes(n: int) -> bytes:
    """``n`` fresh random bytes (``n`` at most ``BLOCK``); never the same bytes twice in this
    process or in another one forked from it."""
    local = _local
    buf = getattr(local, "buf", None)
    at = getattr(local, "at", BLOCK)
    if buf is None or at + n > BLOCK:
        if n > BLOCK:
            return os.urandom(n)
        buf = local.buf = os.urandom(BLOCK)
        at = 0
    local.at = at + n
    return buf[at : at + n]


def _after_fork_in_child() -> None:
    global _local
    _local = threading.local()  # every thread of the child starts with no block


os.register_at_fork(after_in_child=_after_fork_in_child)
