"""What the Celery hand-off puts on the broker: one sealed batch per message.

``pack(events)`` joins the events' JSON (the journal's own, when it kept it: the request
encoded the event once), compresses it and encrypts the whole with AES-GCM under
``TRACKING_ENCRYPTION_KEYS`` (associated data ``AAD``, so a spool line or a stored field
cannot pass for a batch). A batch of similar events compresses about tenfold (500 benchmark
events: 38 KB), and the writer thread no longer encodes each event a second time for kombu.
The broker holds nothing readable, and a message forged or altered there fails
authentication.

``unpack(items)`` is the worker's side: a sealed batch, a single spool line, or an event dict
(messages of earlier versions, and producers of their own, who are trusted like any caller of
the task). What is none of these, or fails authentication, comes back as a dead letter with
its reason, never as an event.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable
from typing import Any

from tracking.integrity import crypto
from tracking.pipeline import journal, spool

PREFIX = "batch:"
AAD = "tracking.broker.batch"
# Decompressed size a batch may not exceed (authenticated data, but bounded all the same).
MAX_UNPACKED = 256 * 1024 * 1024
LEVEL = 1  # zlib: the fastest level already gets most of the ratio on JSON this repetitive


def pack(events: Iterable[Any]) -> str:
    """One sealed message of ``events`` (``Event`` objects or dicts)."""
    parts = [journal.json_of(e) or spool.event_json(e) for e in events]
    blob = zlib.compress(b"\n".join(parts), LEVEL)
    return PREFIX + crypto.encrypt_bytes(blob, AAD)


def unpack(items: Any) -> tuple[list[Any], list[tuple[Any, str]]]:
    """(events as data, dead letters ``(item, reason)``) of a task's argument."""
    if not isinstance(items, list):
        return [], [(items, "broker message is not a list")]
    events: list[Any] = []
    bad: list[tuple[Any, str]] = []
    for item in items:
        if isinstance(item, dict):
            events.append(item)
        elif isinstance(item, str) and item.startswith(PREFIX):
            try:
                events.extend(_batch(item[len(PREFIX) :]))
            except ValueError as exc:
                bad.append((item, f"broker batch refused: {exc}"))
        elif isinstance(item, str) and item.startswith(crypto.PREFIX + ":"):
            try:
                events.append(spool.decode_line(item.encode("ascii")))
            except (ValueError, UnicodeError) as exc:
                bad.append((item, f"broker message failed authentication: {exc}"))
        else:
            bad.append((item, "broker message item is neither an event nor a sealed batch"))
    return events, bad


def _batch(token: str) -> list[Any]:
    try:
        blob = crypto.decrypt_bytes(token, AAD)
    except crypto.DecryptionError as exc:
        raise ValueError(f"failed authentication ({exc})") from exc
    inflate = zlib.decompressobj()
    try:
        text = inflate.decompress(blob, MAX_UNPACKED)
    except zlib.error as exc:
        raise ValueError(f"not a compressed batch ({exc})") from exc
    if inflate.unconsumed_tail:
        raise ValueError(f"larger than {MAX_UNPACKED} bytes uncompressed")
    out = []
    for n, line in enumerate(text.split(b"\n"), 1):
        try:
            out.append(json.loads(line))
        except ValueError as exc:  # authenticated, so our own bug: say where
            raise ValueError(f"event {n} of the batch is not JSON ({exc})") from exc
    return out
