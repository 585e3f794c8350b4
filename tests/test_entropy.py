"""tracking.entropy: random bytes read from the OS in blocks, never handed out twice."""

from __future__ import annotations

import base64
import json
import os
import threading

from tracking import entropy
from tracking.integrity import crypto


def _nonce(token: str) -> bytes:
    return base64.urlsafe_b64decode(token.split(":", 2)[2])[:12]


def test_bytes_are_fresh_across_block_boundaries_and_sizes():
    seen = [entropy.random_bytes(n) for n in (12, 16, 7, 4096, 5000, 1) * 200]
    assert [len(b) for b in seen[:6]] == [12, 16, 7, 4096, 5000, 1]
    chunks = [b for b in seen if len(b) >= 12]
    assert len(set(chunks)) == len(chunks)


def test_threads_never_share_bytes():
    out: list[bytes] = []
    lock = threading.Lock()

    def take():
        mine = [entropy.random_bytes(16) for _ in range(500)]
        with lock:
            out.extend(mine)

    threads = [threading.Thread(target=take) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(out)) == len(out) == 2000


def test_a_forked_child_never_repeats_its_parents_nonces(settings):
    """A repeated AES-GCM nonce under one key gives the key stream away: a child forked while
    the parent holds a block of random bytes must not reuse them."""
    settings.TRACKING_ENCRYPTION_KEYS = [crypto.generate_key()]
    crypto.encrypt_bytes(b"{}", "x")  # the parent has a block in use
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            tokens = [crypto.encrypt_bytes(b"{}", "x") for _ in range(50)]
            os.write(write, json.dumps([_nonce(t).hex() for t in tokens]).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as fh:
        child = set(json.loads(fh.read()))
    os.waitpid(pid, 0)
    parent = {_nonce(crypto.encrypt_bytes(b"{}", "x")).hex() for _ in range(50)}
    assert len(child) == 50 and len(parent) == 50 and not child & parent
